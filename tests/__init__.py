"""tunewire tests."""
