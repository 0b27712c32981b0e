"""The tunewire suggestion server: a stateless gRPC service over a SQL database."""
