"""Generated protobuf and gRPC code of the tunewire.v1 API (see protos/generate.sh)."""
