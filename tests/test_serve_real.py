"""`ensemble-cnn serve` with the real model: the JSON API over a trained run, good and bad uploads, concurrency."""
from __future__ import annotations

import io
import json
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from ensemble_cnn.inference.ensemble import Ensemble
from ensemble_cnn.inference.predict import ImagePredictor
from ensemble_cnn.inference.preprocess import preprocess_digits
from ensemble_cnn.inference.serve import make_server, server_url


@pytest.fixture(scope="module")
def served(trained_run):
    predictor = ImagePredictor(Ensemble.load(trained_run), voting="majority")
    server = make_server(predictor, port=0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server_url(server), predictor
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def post(url: str, body: bytes, content_type: str = "image/png"):
    request = urllib.request.Request(url + "api/predict", data=body, method="POST",
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def drawing(digit: np.ndarray, fmt: str = "PNG") -> bytes:
    """An MNIST digit as a user's drawing: 280x280, black ink on white."""
    image = Image.fromarray(255 - digit).resize((280, 280), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format=fmt)
    return buffer.getvalue()


def test_predict_returns_the_members_votes(served, small_mnist_npz):
    url, predictor = served
    with np.load(small_mnist_npz) as npz:
        digit = npz["x_test"][0]
    body = drawing(digit)
    status, answer = post(url, body)
    assert status == 200
    assert set(answer) >= {"label", "confidence", "vote", "members", "probabilities", "input", "agreement"}
    assert np.array(answer["input"]).shape == (28, 28)
    seen = preprocess_digits([np.asarray(Image.open(io.BytesIO(body)))])
    assert np.array_equal(np.array(answer["input"]), seen[0]), "the input shown is what the members saw"
    expected = predictor.ensemble.member_probabilities(seen)
    assert [m["label"] for m in answer["members"]] == expected[:, 0].argmax(axis=1).tolist()
    assert answer["label"] == int(predictor.ensemble.predict(seen)[0])
    assert answer["agreement"]["of"] == 3 and len(answer["members"][0]["probabilities"]) == 10
    status, jpeg = post(url, drawing(digit, "JPEG"), "image/jpeg")
    assert status == 200 and jpeg["label"] == answer["label"]


def test_info(served, trained_run):
    url, _ = served
    with urllib.request.urlopen(url + "api/info", timeout=30) as response:
        info = json.loads(response.read())
    report = json.loads((trained_run / "report.json").read_text())
    assert info["members"] == ["member_00", "member_01", "member_02"] and info["architecture"] == "nielsen"
    assert info["tta"] == "none"
    assert info["test_accuracy"] == report["ensemble"]["majority"]["test_accuracy"]


@pytest.mark.parametrize("body, text", [
    (b"not an image", "upload: not a PNG, JPEG, BMP, GIF or TIFF image"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "upload: "),
])
def test_bad_uploads_are_400_and_the_server_goes_on(served, body, text, small_mnist_npz):
    url, _ = served
    status, answer = post(url, body)
    assert status == 400 and answer["error"].startswith(text) and "\n" not in answer["error"]
    with np.load(small_mnist_npz) as npz:
        assert post(url, drawing(npz["x_test"][1]))[0] == 200


def test_a_decompression_bomb_is_refused(served):
    url, _ = served
    buffer = io.BytesIO()
    Image.new("1", (30000, 30000)).save(buffer, format="PNG", optimize=True)
    assert len(buffer.getvalue()) < 2 * 1024 * 1024, "small enough to pass the size check: the header must stop it"
    status, answer = post(url, buffer.getvalue())
    assert status == 400 and "pixels" in answer["error"]


def test_twenty_concurrent_requests(served, small_mnist_npz):
    url, predictor = served
    with np.load(small_mnist_npz) as npz:
        digits = npz["x_test"][:20]
    expected = [int(v) for v in predictor.ensemble.predict(preprocess_digits(
        [np.asarray(Image.open(io.BytesIO(drawing(d)))) for d in digits]))]
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda d: post(url, drawing(d)), digits))
    assert [status for status, _ in answers] == [200] * 20
    assert [answer["label"] for _, answer in answers] == expected
