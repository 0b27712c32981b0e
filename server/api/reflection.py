"""Server reflection, as `grpc.reflection.v1` and the older `v1alpha`, answering the
API's files with their source comments, so that reflection clients (`grpcurl describe`)
show the documentation of every RPC, message and field."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2
from grpc_reflection.v1alpha._async import ReflectionServicer

import tunewire.v1

log = logging.getLogger(__name__)
V1_SERVICE = "grpc.reflection.v1.ServerReflection"
# protos/generate.sh writes it beside the generated code, from the .proto files.
DESCRIPTORS = Path(tunewire.v1.__file__).resolve().parent / "descriptors.binpb"


def documented_files() -> dict[str, bytes]:
    """The API's FileDescriptorProtos with source comments, by file name (none, and a
    warning, when an install lacks the file: reflection then answers without comments)."""
    try:
        files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTORS.read_bytes())
    except OSError as exc:
        log.warning("reflection without documentation: %s", exc)
        return {}
    return {f.name: f.SerializeToString() for f in files.file}


class DocumentedReflection(ReflectionServicer):
    """The reflection servicer, answering the files it has comments for from them."""

    def __init__(self, service_names: Iterable[str], documented: dict[str, bytes]) -> None:
        super().__init__(service_names)
        self._documented = documented
        self._pool = descriptor_pool.Default()

    def _file_by_filename(self, request: Any, filename: str) -> Any:
        try:
            return self._answer(self._pool.FindFileByName(filename), request)
        except KeyError:
            return super()._file_by_filename(request, filename)

    def _file_containing_symbol(self, request: Any, fully_qualified_name: str) -> Any:
        try:
            return self._answer(self._file_of(fully_qualified_name), request)
        except KeyError:
            return super()._file_containing_symbol(request, fully_qualified_name)

    def _file_of(self, name: str) -> Any:
        """The file defining `name`: a top-level symbol or a member of one.

        The pool finds services, messages (nested ones too), enums, fields and enum values
        by their protobuf names, but not methods (``tunewire.v1.TuningService.AddTrial``,
        which `grpcurl describe` asks for); an enum value is also looked up under its enum
        (``tunewire.v1.Goal.GOAL_MAXIMIZE``), as people write it.

        Raises:
            KeyError: no such symbol, and `name` is no member of its enclosing symbol.
        """
        try:
            return self._pool.FindFileContainingSymbol(name)
        except KeyError:
            parent, _, member = name.rpartition(".")
            if parent and member in self._members(parent):
                return self._pool.FindFileContainingSymbol(parent)
            raise

    def _members(self, name: str) -> set[str]:
        """The names of the members of the service, message or enum `name` (none when it is
        none of those)."""
        lookups = (
            (self._pool.FindServiceByName, ("methods_by_name",)),
            (
                self._pool.FindMessageTypeByName,
                ("fields_by_name", "nested_types_by_name", "enum_types_by_name", "oneofs_by_name"),
            ),
            (self._pool.FindEnumTypeByName, ("values_by_name",)),
        )
        for find, kinds in lookups:
            try:
                descriptor = find(name)
            except KeyError:
                continue  # not a symbol of this kind
            return {member for kind in kinds for member in getattr(descriptor, kind)}
        return set()

    def _answer(self, descriptor: Any, request: Any) -> Any:
        """The file and its transitive dependencies, each documented where possible."""
        files: dict[str, Any] = {}
        pending = [descriptor]
        while pending:
            current = pending.pop()
            if current.name not in files:
                files[current.name] = current
                pending.extend(current.dependencies)
        serialized = []
        for name, file in files.items():
            if name in self._documented:
                serialized.append(self._documented[name])
            else:
                proto = descriptor_pb2.FileDescriptorProto()
                file.CopyToProto(proto)
                serialized.append(proto.SerializeToString())
        return reflection_pb2.ServerReflectionResponse(
            file_descriptor_response=reflection_pb2.FileDescriptorResponse(
                file_descriptor_proto=serialized
            ),
            original_request=request,
        )


def add_reflection(server: grpc.aio.Server, service_names: Iterable[str]) -> None:
    """Serves reflection on `server` for these services, as v1 and v1alpha (the two
    protocols are the same messages under two package names)."""
    names = (*service_names, reflection.SERVICE_NAME, V1_SERVICE)
    servicer = DocumentedReflection(names, documented_files())
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    for service in (reflection.SERVICE_NAME, V1_SERVICE):
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service, {"ServerReflectionInfo": handler}),)
        )
