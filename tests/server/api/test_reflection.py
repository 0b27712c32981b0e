"""Server reflection as a client of either protocol sees it: v1 and v1alpha list the
services and answer the API's files with their documentation (source comments)."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2

from tunewire.server.app import RunningServer
from tunewire.v1 import tuning_service_pb2 as api

PROTOCOLS = ["grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"]


def ask(
    server: RunningServer, service: str, *requests: reflection_pb2.ServerReflectionRequest
) -> list[reflection_pb2.ServerReflectionResponse]:
    """A reflection conversation (the v1 messages are v1alpha's, under another package)."""
    channel = grpc.insecure_channel(server.target)
    try:
        call = channel.stream_stream(
            f"/{service}/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        return list(call(iter(requests), timeout=30))
    finally:
        channel.close()


@pytest.fixture
def server(sqlite_server: RunningServer) -> Iterator[RunningServer]:
    yield sqlite_server


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_reflection_lists_the_services(server: RunningServer, protocol: str) -> None:
    (answer,) = ask(server, protocol, reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {s.name for s in answer.list_services_response.service}
    assert {"tunewire.v1.TuningService", "grpc.health.v1.Health", *PROTOCOLS} <= names


def comments(answer: reflection_pb2.ServerReflectionResponse) -> dict[str, str]:
    """Leading comments of the services' methods, by method name."""
    out = {}
    for raw in answer.file_descriptor_response.file_descriptor_proto:
        file = descriptor_pb2.FileDescriptorProto.FromString(raw)
        for location in file.source_code_info.location:
            path = list(location.path)
            # [6, service index, 2, method index]: a method of a service.
            if len(path) == 4 and path[0] == 6 and path[2] == 2:
                method = file.service[path[1]].method[path[3]]
                out[method.name] = location.leading_comments
    return out


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_api_is_described_with_its_documentation(server: RunningServer, protocol: str) -> None:
    (by_symbol, by_file) = ask(
        server,
        protocol,
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="tunewire.v1.TuningService"),
        reflection_pb2.ServerReflectionRequest(file_by_filename="tunewire/v1/study.proto"),
    )
    documented = comments(by_symbol)
    assert "Hands trials to a worker" in documented["SuggestTrials"]
    rpcs = api.DESCRIPTOR.services_by_name["TuningService"].methods
    assert len(documented) == len(rpcs) and all(documented.values())
    names = {
        descriptor_pb2.FileDescriptorProto.FromString(raw).name
        for raw in by_symbol.file_descriptor_response.file_descriptor_proto
    }
    assert names == {
        "tunewire/v1/tuning_service.proto",
        "tunewire/v1/study.proto",
        "google/protobuf/timestamp.proto",
    }
    study = descriptor_pb2.FileDescriptorProto.FromString(
        by_file.file_descriptor_response.file_descriptor_proto[0]
    )
    assert any(
        "search space" in location.leading_comments.lower()
        for location in study.source_code_info.location
    )
    (health,) = ask(
        server,
        protocol,
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="grpc.health.v1.Health"),
    )
    assert health.file_descriptor_response.file_descriptor_proto


def first_file(answer: reflection_pb2.ServerReflectionResponse) -> str:
    """The name of the file an answer is about (its dependencies follow it)."""
    raw = answer.file_descriptor_response.file_descriptor_proto[0]
    return descriptor_pb2.FileDescriptorProto.FromString(raw).name


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    ("symbol", "file"),
    [
        # `grpcurl describe tunewire.v1.TuningService.AddTrial` asks for the method.
        ("tunewire.v1.TuningService.AddTrial", "tunewire/v1/tuning_service.proto"),
        ("tunewire.v1.AddTrialRequest.request_id", "tunewire/v1/tuning_service.proto"),
        ("tunewire.v1.GOAL_MAXIMIZE", "tunewire/v1/study.proto"),
        ("tunewire.v1.Goal.GOAL_MAXIMIZE", "tunewire/v1/study.proto"),
        ("tunewire.v1.Trial.ParametersEntry", "tunewire/v1/study.proto"),
        ("tunewire.v1.ParameterSpec.domain", "tunewire/v1/study.proto"),
    ],
)
def test_members_are_found_in_the_file_of_their_enclosing_symbol(
    server: RunningServer, protocol: str, symbol: str, file: str
) -> None:
    (answer,) = ask(
        server, protocol, reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
    )
    assert not answer.HasField("error_response"), answer.error_response.error_message
    assert first_file(answer) == file
    if symbol.endswith(".AddTrial"):
        assert "warm start" in comments(answer)["AddTrial"], "described with its documentation"


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    "symbol",
    ["no.such.Thing", "tunewire.v1", "tunewire.v1.TuningService.NoSuchCall", "tunewire.v1.No.x"],
)
def test_an_unknown_symbol_is_not_found(server: RunningServer, protocol: str, symbol: str) -> None:
    (answer,) = ask(
        server, protocol, reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
    )
    assert answer.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
