"""Training members: recipes, callbacks, one member, fused groups, execution engines, the trainer."""
