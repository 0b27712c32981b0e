"""Built-in training tasks and their default search spaces."""
