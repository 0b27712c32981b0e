"""The tunewire dashboard: a read-only web UI of a tunewire server, and shareable study
reports. It is a client of the gRPC API like any other (`tunewire.client`), so it works
against any replica, with TLS and tokens.

    tunewire dashboard --server HOST:PORT          # http://127.0.0.1:8080
    tunewire study report NAME -o report.html      # one self-contained file
"""
