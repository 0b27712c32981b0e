"""The domain: studies, search spaces, the trial lifecycle, early-stopping rules and the
API's limits, as plain Python (no gRPC, no SQL), with errors named for the domain."""
