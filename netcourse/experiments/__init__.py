"""One module per notebook: the live scenarios that notebook runs, each returning a plain result."""
