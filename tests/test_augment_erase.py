"""Random erasing (Cutout squares): known answers, draws, chunk independence, and the ``--erase`` training option."""

from __future__ import annotations

import json

import numpy as np
import pytest

from augment import (
    BLOCK_SIZE,
    Boxes,
    Distortion,
    Erasing,
    draw_boxes,
    draw_variant_boxes,
    erase,
    erase_boxes,
    erase_generator,
    expand,
    parse_sides,
)


def boxes(*rows: tuple[bool, int, int, int, int]) -> Boxes:
    """Boxes from ``(erased, top, left, height, width)`` rows."""
    erased, top, left, height, width = zip(*rows)
    return Boxes(np.array(erased), *(np.array(v, dtype=np.int64) for v in (top, left, height, width)))


def ink(n: int = 4, dtype=np.uint8, shape=(28, 28)) -> np.ndarray:
    """``n`` images with every pixel at a distinct non-zero value (so any erased pixel shows)."""
    values = 1 + np.arange(n * shape[0] * shape[1]) % 250
    return values.reshape(n, *shape).astype(dtype)


# --------------------------------------------------------------------------- the pure transform
def test_a_box_inside_is_exactly_its_pixels_set_to_zero() -> None:
    x = ink(2)
    got = erase_boxes(x, boxes((True, 5, 7, 10, 12), (False, 5, 7, 10, 12)))
    expected = x.copy()
    expected[0, 5:15, 7:19] = 0
    assert np.array_equal(got, expected)
    assert (got[0] == 0).sum() == 10 * 12 and np.array_equal(got[1], x[1])
    assert np.all(x != 0), "the input is not touched"


def test_boxes_partly_outside_are_clipped_at_the_border() -> None:
    x = ink(6)
    got = erase_boxes(x, boxes(
        (True, -3, -5, 8, 8),     # top-left corner: rows 0..4, columns 0..2
        (True, 24, 25, 8, 8),     # bottom-right: rows 24..27, columns 25..27
        (True, 30, 0, 8, 8),      # wholly below the image: nothing
        (True, -10, -10, 50, 50),  # larger than the image: everything
        (True, 3, 3, 0, 9),       # empty box: nothing
        (True, 10, -4, 4, 6),     # left edge: rows 10..13, columns 0..1
    ))
    expected = x.copy()
    expected[0, 0:5, 0:3] = 0
    expected[1, 24:28, 25:28] = 0
    expected[3] = 0
    expected[5, 10:14, 0:2] = 0
    assert np.array_equal(got, expected)
    assert [(got[i] == 0).sum() for i in range(6)] == [15, 12, 0, 784, 0, 8]


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_dtype_shape_and_out_are_kept(dtype) -> None:
    x = ink(3, dtype=dtype, shape=(9, 13))
    b = boxes((True, 1, 2, 3, 4), (True, -1, 10, 4, 4), (False, 0, 0, 9, 13))
    got = erase_boxes(x, b)
    assert got.dtype == np.dtype(dtype) and got.shape == (3, 9, 13)
    out = np.full_like(x, 7)
    assert erase_boxes(x, b, out=out) is out and np.array_equal(out, got)
    in_place = x.copy()
    assert erase_boxes(in_place, b, out=in_place) is in_place and np.array_equal(in_place, got)
    random = erase(x, Erasing(1.0, 3, 5), np.random.default_rng(0))
    assert random.dtype == np.dtype(dtype) and random.shape == x.shape


# --------------------------------------------------------------------------- the draws
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_p_zero_is_byte_identical(synthetic_digits, dtype) -> None:
    x = synthetic_digits.astype(dtype)
    got = erase(x, Erasing(p=0.0, min_side=8, max_side=16), np.random.default_rng(1))
    assert got.dtype == x.dtype and got.tobytes() == x.tobytes()
    assert not draw_boxes(Erasing(p=0.0), np.random.default_rng(1), 1000, (28, 28)).erased.any()


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_p_one_fixed_side_erases_side_squared_background_pixels_when_inside(dtype) -> None:
    side = 8
    x = ink(500, dtype=dtype)
    rng_seed = 11
    got = erase(x, Erasing(p=1.0, min_side=side, max_side=side), np.random.default_rng(rng_seed))
    b = draw_boxes(Erasing(p=1.0, min_side=side, max_side=side), np.random.default_rng(rng_seed), 500, (28, 28))
    assert b.erased.all() and (b.height == side).all() and (b.width == side).all()
    inside = (b.top >= 0) & (b.left >= 0) & (b.top + side <= 28) & (b.left + side <= 28)
    assert 100 < inside.sum() < 500, "some squares inside, some clipped"
    zeros = (got == 0).sum(axis=(1, 2))
    assert (zeros[inside] == side * side).all()
    assert (zeros[~inside] < side * side).all() and (zeros[~inside] >= (side // 2) ** 2).all()
    for i in np.flatnonzero(inside)[:20]:
        t, l = b.top[i], b.left[i]
        assert (got[i, t:t + side, l:l + side] == 0).all()
        kept = np.ones((28, 28), bool)
        kept[t:t + side, l:l + side] = False
        assert np.array_equal(got[i][kept], x[i][kept])


def test_draws_cover_the_side_range_and_centres_anywhere() -> None:
    e = Erasing(p=0.3, min_side=8, max_side=16)
    n = 20_000
    b = draw_boxes(e, np.random.default_rng(5), n, (28, 20))
    assert b.erased.dtype == bool and len(b) == n
    assert set(np.unique(b.height)) == set(range(8, 17)) and np.array_equal(b.height, b.width)
    centre_rows, centre_cols = b.top + b.height // 2, b.left + b.width // 2
    assert set(np.unique(centre_rows)) == set(range(28)) and set(np.unique(centre_cols)) == set(range(20))
    assert abs(b.erased.mean() - 0.3) < 5 * np.sqrt(0.3 * 0.7 / n)


def test_same_generator_state_same_boxes_and_bytes(synthetic_digits) -> None:
    e = Erasing(p=0.5, min_side=8, max_side=16)
    a = erase(synthetic_digits, e, np.random.default_rng(42))
    b = erase(synthetic_digits, e, np.random.default_rng(42))
    c = erase(synthetic_digits, e, np.random.default_rng(43))
    assert a.tobytes() == b.tobytes() and a.tobytes() != c.tobytes()
    assert np.array_equal(a, erase_boxes(synthetic_digits, draw_boxes(e, np.random.default_rng(42), 300, (28, 28))))


# --------------------------------------------------------------------------- expansion: per block, not per chunk
@pytest.fixture(scope="module")
def digits(synthetic_digits):
    return synthetic_digits, np.arange(len(synthetic_digits), dtype=np.uint8) % 10


@pytest.mark.parametrize("distortion", [Distortion(transforms=("shift", "rotate")), Distortion(), Distortion(())],
                         ids=["affine", "elastic", "identity"])
def test_expansion_with_erasing_is_byte_identical_for_any_chunking(digits, distortion) -> None:
    x, y = digits
    e = Erasing(p=0.5, min_side=8, max_side=16)
    ref, _ = expand(x, y, copies=2, distortion=distortion, erasing=e, seed=3, chunk_size=256)
    for chunk_size, n_jobs in [(37, 1), (1000, 1), (64, 2), (100, 2)]:
        got, _ = expand(x, y, copies=2, distortion=distortion, erasing=e, seed=3, chunk_size=chunk_size,
                        n_jobs=n_jobs)
        assert got.tobytes() == ref.tobytes(), (chunk_size, n_jobs)
    procs, _ = expand(x, y, copies=2, distortion=distortion, erasing=e, seed=3, chunk_size=50, n_jobs=2,
                      backend="processes")
    assert procs.tobytes() == ref.tobytes()
    # Erasing leaves the originals and the distortions as they were: the erased set is the plain one with the
    # squares of each block's own generator set to 0.
    plain, _ = expand(x, y, copies=2, distortion=distortion, seed=3)
    assert np.array_equal(ref[:300], x)
    squares = draw_variant_boxes(e, 3, 0, 600, 600, (28, 28))
    assert np.array_equal(ref[300:], erase_boxes(plain[300:], squares))
    first_block = draw_boxes(e, erase_generator(3, 0), BLOCK_SIZE, (28, 28))
    assert np.array_equal(squares.erased[:BLOCK_SIZE], first_block.erased)
    assert np.array_equal(squares.top[:BLOCK_SIZE], first_block.top)
    assert 0.4 < squares.erased.mean() < 0.6 and not np.array_equal(ref, plain)


# --------------------------------------------------------------------------- refused in one line
@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Erasing(p=-0.1), "p must be in [0, 1], got -0.1"),
        (lambda: Erasing(p=1.5), "p must be in [0, 1], got 1.5"),
        (lambda: Erasing(p=float("nan")), "p must be finite"),
        (lambda: Erasing(p="0.5"), "p must be a number"),
        (lambda: Erasing(min_side=0), "min_side must be in [1, 28], got 0"),
        (lambda: Erasing(min_side=8.5), "min_side must be an integer"),
        (lambda: Erasing(max_side=29), "max_side must be in [min_side, 28] = [8, 28], got 29"),
        (lambda: Erasing(min_side=12, max_side=8), "max_side must be in [min_side, 28] = [12, 28], got 8"),
        (lambda: parse_sides("0-4"), "size must be a side S or a range MIN-MAX"),
        (lambda: parse_sides("16-8"), "got '16-8'"),
        (lambda: parse_sides("8-30", name="erase_size"), "erase_size must be a side S"),
        (lambda: parse_sides("8,16"), "got '8,16'"),
        (lambda: parse_sides(12), "got 12"),
        (lambda: draw_boxes(Erasing(), "rng", 3, (28, 28)), "rng must be a numpy.random.Generator"),
        (lambda: draw_boxes(Erasing(), np.random.default_rng(), -1, (28, 28)), "n must be >= 0"),
        (lambda: draw_boxes({"p": 1}, np.random.default_rng(), 3, (28, 28)), "erasing must be an Erasing"),
        (lambda: erase_boxes(ink(2), boxes((True, 0, 0, 1, 1))),
         "boxes.erased must be booleans of shape (N,) = (2,)"),
        (lambda: erase_boxes(ink(1), boxes((True, 0, 0, -1, 1))), "boxes.height and boxes.width must be >= 0"),
        (lambda: erase_boxes(ink(1), Boxes(np.array([1]), *np.zeros((4, 1), np.int64))),
         "boxes.erased must be booleans"),
        (lambda: erase_boxes(ink(1), Boxes(np.array([True]), np.array([0.5]), *np.zeros((3, 1), np.int64))),
         "boxes.top must be integers"),
        (lambda: erase_boxes(ink(1).astype(np.int32), boxes((True, 0, 0, 1, 1))),
         "images must be uint8 or floating"),
        (lambda: erase_boxes(ink(1), boxes((True, 0, 0, 1, 1)), out=np.zeros((1, 28, 28), np.float32)),
         "out must have dtype uint8"),
        (lambda: expand(ink(2), np.zeros(2), copies=1, erasing=0.5), "erasing must be an Erasing or None"),
    ],
)
def test_bad_parameters_are_refused_in_one_line(make, message) -> None:
    with pytest.raises(ValueError) as info:
        make()
    assert message in str(info.value) and "\n" not in str(info.value)


# --------------------------------------------------------------------------- training: --erase
def test_config_defaults_off_and_an_old_config_json_still_loads(tiny_config, tmp_path) -> None:
    from ensemble_cnn.config import TrainConfig

    assert TrainConfig().erase == 0.0 and TrainConfig().erase_size == "8-16"
    old = tiny_config().to_dict()
    del old["erase"], old["erase_size"]  # a run folder written before --erase existed
    path = tmp_path / "config.json"
    path.write_text(json.dumps(old))
    loaded = TrainConfig.load(path)
    assert (loaded.erase, loaded.erase_size) == (0.0, "8-16") and loaded.identity() == tiny_config().identity()
    assert tiny_config(erase=1, erase_size=" 12 ").erase_size == "12-12"
    for bad, message in [(dict(erase=1.5), "erase must be in [0, 1], got 1.5"),
                         (dict(erase_size="0-4"), "erase_size must be a side S or a range MIN-MAX"),
                         (dict(erase_size=12), "erase_size must be a string")]:
        with pytest.raises(ValueError) as info:
            tiny_config(**bad)
        assert message in str(info.value), bad


def test_a_plan_group_may_erase(tiny_config) -> None:
    cfg = tiny_config(members=2, plan=[{"count": 1}, {"count": 1, "erase": 1, "erase_size": "10"}])
    assert cfg.plan[1] == {"name": "erase=1.0,erase_size=10-10", "count": 1, "erase": 1.0, "erase_size": "10-10"}
    assert cfg.member_config(0).erase == 0.0 and cfg.member_config(1).erase == 1.0


def test_the_members_training_batches_are_erased_after_their_distortions(tiny_config) -> None:
    """plan_run gives the run its Erasing; each streamed batch is the distorted batch with the squares drawn from
    (seed, ERASE_STREAM, epoch, batch) set to 0, and the distortions are those of the run without erasing."""
    from ensemble_cnn.data.training import load_pool
    from ensemble_cnn.seeding import ERASE_STREAM, rng_for
    from ensemble_cnn.training.member import plan_run

    cfg = tiny_config(augmentation="distort", erase=1.0, erase_size="10-12", epochs=2, batch_size=32, limit=300)
    plain_cfg = tiny_config(augmentation="distort", epochs=2, batch_size=32, limit=300)
    pool = load_pool(data=cfg.data, expanded=None, limit=cfg.limit)
    plan, plain = plan_run(cfg, 0, pool), plan_run(plain_cfg, 0, pool)
    assert plan.erasing == Erasing(1.0, 10, 12) and plain.erasing is None
    erased_batches, plain_batches = list(plan.stream(cfg)), list(plain.stream(plain_cfg))
    per_epoch = -(-len(plan.x_train) // cfg.batch_size)
    assert len(erased_batches) == len(plain_batches) == 2 * per_epoch
    for k, ((x, y), (x0, y0)) in enumerate(zip(erased_batches, plain_batches)):
        assert np.array_equal(y, y0) and x.dtype == x0.dtype == np.uint8
        squares = draw_boxes(plan.erasing, rng_for(plan.seed, ERASE_STREAM, k // per_epoch, k % per_epoch),
                             len(x), (28, 28))
        assert np.array_equal(x, erase_boxes(x0, squares)), k
        assert squares.erased.all() and (x != x0).any(axis=(1, 2)).mean() > 0.5, "the squares hit ink"
    # A digit's square is drawn afresh every epoch.
    assert not np.array_equal(erased_batches[0][0], erased_batches[per_epoch][0])


def test_distorted_views_show_the_erasing_the_stream_applies(synthetic_digits) -> None:
    from ensemble_cnn.data.training import batch_stream, distorted_views

    images, labels = synthetic_digits[:64], np.arange(64) % 10
    e, d = Erasing(1.0, 8, 16), Distortion()
    stream = list(batch_stream(images, labels, batch_size=64, epochs=2, seed=9, distortion=d, erasing=e))
    views = distorted_views(images, np.arange(64), batch_size=64, epochs=2, seed=9, distortion=d, erasing=e)
    for epoch in range(2):
        assert np.array_equal(views[:, epoch], stream[epoch][0])  # one batch of every row, in row order


def test_train_with_erase_end_to_end(small_mnist_npz, tmp_path) -> None:
    from click.testing import CliRunner

    from cli.main import main
    from conftest import tiny_args

    run_dir = tmp_path / "run"
    args = ["train", "--data", str(small_mnist_npz), *tiny_args(limit="300", val_size="30"), "--augment", "distort",
            "--erase", "0.5", "--erase-size", "8-16", "--out", str(run_dir)]
    runner = CliRunner()
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["erase"], config["erase_size"]) == (0.5, "8-16")
    assert (run_dir / "member_00.keras").is_file() and (run_dir / "report.json").is_file()

    other = runner.invoke(main, [*args[:-2], "--erase", "0.25", "--out", str(run_dir)])
    assert other.exit_code == 1 and "--erase (0.5 in the folder, 0.25 asked)" in other.output
    bad = runner.invoke(main, [*args[:-2], "--erase-size", "16-8", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "--erase-size must be a side S or a range MIN-MAX" in bad.output
    assert len([line for line in bad.output.splitlines() if line.startswith("Error")]) == 1
