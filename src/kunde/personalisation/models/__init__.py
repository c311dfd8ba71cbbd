"""Pure recommender, value and decision models: numpy/scipy only, no I/O."""
