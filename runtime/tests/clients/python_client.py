"""Every operation of the demo node through the client openapi-python-client generates.

The client is generated from /openapi-3.0.json into ./alknet_client (see
runtime/tests/external_clients.rs): the 3.0.3 variant describes a subscription's body as text,
which this generator hands back as the raw event stream (from the 3.1 document it would try to
parse the stream as one item's JSON). Usage: python3 python_client.py BASE_URL
Prints "python client ok" when every check passed; raises otherwise.
"""
import json
import sys

from alknet_client.api.demo import (
    demo_add, demo_admin, demo_compose, demo_echo, demo_fail, demo_sleep, demo_ticks, demo_whoami,
)
from alknet_client.api.gateway import (
    gateway_batch, gateway_call, gateway_health, gateway_schema, gateway_search,
    gateway_subscribe, gateway_subscribe_get,
)
from alknet_client.client import AuthenticatedClient, Client
from alknet_client.models.call_error import CallError
from alknet_client.models.demo_add_add_input import DemoAddAddInput
from alknet_client.models.demo_compose_compose_input import DemoComposeComposeInput
from alknet_client.models.demo_fail_fail_input import DemoFailFailInput
from alknet_client.models.demo_sleep_sleep_input import DemoSleepSleepInput
from alknet_client.models.demo_ticks_ticks_input import DemoTicksTicksInput
from alknet_client.models.gateway_batch_body_item import GatewayBatchBodyItem
from alknet_client.models.gateway_call_body import GatewayCallBody
from alknet_client.models.gateway_subscribe_body import GatewaySubscribeBody

BASE = sys.argv[1]
anonymous = Client(base_url=BASE)
admin = AuthenticatedClient(base_url=BASE, token="alk_demo_admin_token")


def events(stream: str) -> list:
    """(event, id, data) of each Server-Sent Event in a whole stream."""
    parsed = []
    for block in stream.strip().split("\n\n"):
        fields = {"event": "message"}
        for line in block.split("\n"):
            name, _, value = line.partition(":")
            fields[name] = value.strip()
        parsed.append((fields["event"], fields.get("id"), json.loads(fields["data"])))
    return parsed


TICKS = [("message", "1", {"n": 1}), ("message", "2", {"n": 2}), ("completed", "end", {})]

out = demo_add.sync(client=anonymous, body=DemoAddAddInput(a=2, b=40))
assert out.sum_ == 42, out  # `sum` shadows a builtin, so the generator names it `sum_`
out = demo_compose.sync(client=anonymous, body=DemoComposeComposeInput(a=1, b=2, c=3))
assert out.sum_ == 6, out
assert demo_echo.sync(client=anonymous, body={"x": [1, 2]}) == {"x": [1, 2]}
failed = demo_fail.sync(client=anonymous, body=DemoFailFailInput(reason="generated"))
assert isinstance(failed, CallError) and failed.code == "DEMO_FAILED", failed
assert demo_sleep.sync(client=anonymous, body=DemoSleepSleepInput(ms=5)).slept_ms == 5
assert demo_whoami.sync(client=anonymous) is None
who = demo_whoami.sync(client=admin)
assert who.id == "admin", who
denied = demo_admin.sync_detailed(client=AuthenticatedClient(base_url=BASE, token="wrong"))
assert denied.status_code == 401, denied
assert demo_admin.sync(client=admin).by == "admin"

# Subscriptions: the raw stream, one typed route and both generic ones.
ticks = demo_ticks.sync(client=anonymous, body=DemoTicksTicksInput(count=2, interval_ms=1))
assert events(ticks) == TICKS, ticks
generic = gateway_subscribe.sync(
    client=anonymous, body=GatewaySubscribeBody(operation="demo/ticks", input_={"count": 2})
)
assert events(generic) == TICKS, generic
by_get = gateway_subscribe_get.sync(
    client=anonymous, operation="demo/ticks", input_=json.dumps({"count": 2, "intervalMs": 1})
)
assert events(by_get) == TICKS, by_get
bad_input = gateway_subscribe_get.sync_detailed(client=anonymous, operation="demo/ticks", input_="{not json")
assert bad_input.status_code == 400, bad_input

# The generic routes and discovery.
assert gateway_call.sync(
    client=anonymous, body=GatewayCallBody(operation="demo/add", input_={"a": 1, "b": 2})
) == {"sum": 3}
answers = gateway_batch.sync(client=anonymous, body=[
    GatewayBatchBodyItem(operation="demo/add", input_={"a": 1, "b": 1}),
    GatewayBatchBodyItem(operation="demo/nope", input_={}),
])
assert answers[0].output == {"sum": 2}, answers
assert answers[1].error.code == "NOT_FOUND", answers
names = [op["name"] for op in gateway_search.sync(client=anonymous, q="demo").operations]
assert "demo/add" in names and "demo/admin" not in names, names
assert gateway_schema.sync(client=anonymous, name="demo/add")["name"] == "demo/add"
assert gateway_health.sync(client=anonymous) == "ok"
print("python client ok")
