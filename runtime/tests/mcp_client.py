"""The official Python MCP client (mcp 2.x) against `alknet serve --demo --http`.

Usage: python3 mcp_client.py URL [per-operation|gateway]
Prints "mcp client ok" when every check passed; raises otherwise.
"""
import asyncio
import json
import sys
import warnings

import httpx2
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client

warnings.simplefilter("ignore")
URL, MODE = sys.argv[1], sys.argv[2]


def client(token=None, **kwargs):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return Client(streamable_http_client(URL, http_client=httpx2.AsyncClient(headers=headers)), **kwargs)


async def per_operation():
    # The current protocol: discovery first.
    async with client() as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
        assert "demo.add" in tools and "demo.echo" in tools, tools.keys()
        assert "demo.admin" not in tools, "restricted operations are hidden from anonymous callers"
        assert "demo.ticks" not in tools, "subscriptions are not tools"
        assert "demo.secret" not in tools, "internal operations are never tools"
        assert "demo.ask_peer" not in tools, "operations that call the caller back need a connection MCP has not"
        add = tools["demo.add"]
        assert add.annotations.read_only_hint is True, add.annotations
        assert tools["demo.fail"].annotations.read_only_hint is False
        assert add.input_schema["required"] == ["a", "b"], add.input_schema
        assert add.output_schema["properties"]["sum"]["type"] == "number"
        assert tools["demo.echo"].output_schema["properties"]["result"] is not None, "non-object outputs are wrapped"

        result = await c.call_tool("demo.add", {"a": 2, "b": 40})
        assert not result.is_error and result.structured_content == {"sum": 42}, result
        assert '"sum":42' in result.content[0].text.replace(" ", ""), result.content
        # Any-JSON inputs are wrapped as {"input": …}: MCP input schemas must be objects.
        assert tools["demo.echo"].input_schema["required"] == ["input"]
        echo = await c.call_tool("demo.echo", {"input": {"x": [1, 2]}})
        assert echo.structured_content == {"result": {"x": [1, 2]}}, echo
        # Tool errors carry the call.error as text, with no structuredContent that would have
        # to match the tool's outputSchema (clients check it even on errors).
        failed = await c.call_tool("demo.fail", {"reason": "mcp"})
        assert failed.is_error and failed.structured_content is None, failed
        assert json.loads(failed.content[0].text)["error"]["code"] == "DEMO_FAILED", failed
        invalid = await c.call_tool("demo.add", {"a": "x", "b": 1})
        assert invalid.is_error and json.loads(invalid.content[0].text)["error"]["code"] == "INVALID_INPUT", invalid
        # A wrapped input left out is an error, not a null input.
        missing = await c.call_tool("demo.echo", {})
        error = json.loads(missing.content[0].text)["error"]
        assert missing.is_error and error["code"] == "INVALID_INPUT" and error["details"]["pointer"] == "/input", missing
        # A tool hidden from this caller does not exist for it.
        try:
            await c.call_tool("demo.admin", {})
            raise AssertionError("a hidden tool was callable")
        except MCPError as error:
            assert "unknown tool" in str(error), error
    # A token shows what its identity may call.
    async with client("alk_demo_admin_token") as c:
        tools = {t.name for t in (await c.list_tools()).tools}
        assert "demo.admin" in tools, tools
        admin = await c.call_tool("demo.admin", {})
        assert admin.structured_content == {"ok": True, "by": "admin"}, admin
    # The legacy handshake (initialize), where ping exists.
    async with client(mode="legacy") as c:
        await c.send_ping()
        result = await c.call_tool("demo.add", {"a": 1, "b": 1})
        assert result.structured_content == {"sum": 2}, result


async def gateway():
    async with client() as c:
        names = sorted(t.name for t in (await c.list_tools()).tools)
        assert names == ["batch", "call", "schema", "search"], names
        found = await c.call_tool("search", {"q": "add"})
        assert any(op["name"] == "demo/add" for op in found.structured_content["operations"]), found
        spec = await c.call_tool("schema", {"name": "demo/add"})
        assert spec.structured_content["op_type"] == "query", spec
        called = await c.call_tool("call", {"operation": "demo/add", "input": {"a": 3, "b": 4}})
        assert called.structured_content == {"output": {"sum": 7}}, called
        batch = await c.call_tool("batch", {"calls": [{"operation": "demo/add", "input": {"a": 1, "b": 1}}, {"operation": "demo/secret"}]})
        answers = batch.structured_content["answers"]
        assert answers[0] == {"output": {"sum": 2}} and answers[1]["error"]["code"] == "NOT_FOUND", answers
        # The same batch rules as POST /batch: over the limit or malformed, nothing runs.
        too_many = await c.call_tool("batch", {"calls": [{"operation": "demo/add", "input": {"a": 1, "b": 1}}] * 1001})
        assert too_many.is_error and too_many.structured_content["error"]["code"] == "INVALID_INPUT", too_many
        assert "at most 1000" in too_many.structured_content["error"]["message"], too_many
        malformed = await c.call_tool("batch", {"calls": [{"operation": "demo/add", "input": {"a": 1, "b": 1}}, {"input": {}}]})
        assert malformed.is_error and malformed.structured_content["error"]["details"]["pointer"] == "/1", malformed


asyncio.run(per_operation() if MODE == "per-operation" else gateway())
print("mcp client ok")
