"""Python client library of the tunewire tuning service.

from tunewire.client import TuningClient
"""

from tunewire.client.client import (
    Heartbeat,
    Trial,
    TrialRecord,
    TunewireClientError,
    TuningClient,
    default_worker_id,
)
from tunewire.client.spec import SpecError, load_spec_file, spec_from_dict

__all__ = [
    "Heartbeat",
    "SpecError",
    "Trial",
    "TrialRecord",
    "TuningClient",
    "TunewireClientError",
    "default_worker_id",
    "load_spec_file",
    "spec_from_dict",
]
