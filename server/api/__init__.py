"""The gRPC edge: protobuf <-> domain conversion, the servicer (one awaited service call
per RPC and the status table), interceptors (auth, metrics) and the metrics endpoint."""
