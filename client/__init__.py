"""Python client library of the tunewire tuning service."""
