"""Python client library of the tunewire tuning service.

from tunewire.client import TuningClient
"""

from tunewire.client.client import TuningClient, default_worker_id
from tunewire.client.heartbeat import Heartbeat
from tunewire.client.records import TrialRecord, TunewireClientError
from tunewire.client.spec import SpecError, load_spec_file, spec_from_dict
from tunewire.client.trial import Trial

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
