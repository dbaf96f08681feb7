"""A small FastAPI service that `tests/adapters_openapi.rs` imports with `from_openapi`.

Run: python3 -m uvicorn openapi_service:app --app-dir runtime/tests --port PORT

Path, query and header parameters, a JSON body, declared error statuses, an API key, a
Server-Sent Events stream (sse-starlette), a plain-text answer, 204, a body that is not JSON
(which the importer must skip), an answer that breaks its own schema, and a slow endpoint that
counts the requests whose client went away (to see aborts arrive).
"""

import asyncio
import json
from typing import Optional

from fastapi import FastAPI, Header, HTTPException, Query, Request, Security
from fastapi.responses import PlainTextResponse, Response
from fastapi.security import APIKeyHeader
from pydantic import BaseModel
from sse_starlette.sse import EventSourceResponse

app = FastAPI(title="items", version="1.0.0")

API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False)
STATS = {"slow_started": 0, "slow_cancelled": 0, "slow_finished": 0}


class Item(BaseModel):
    name: str
    price: float
    tax: Optional[float] = None


class Stored(BaseModel):
    id: int
    name: str
    price: float
    tax: Optional[float] = None


class Message(BaseModel):
    detail: str


ITEMS = {1: Stored(id=1, name="hammer", price=9.5)}


@app.get("/items/{item_id}", operation_id="getItem", responses={404: {"model": Message}})
def get_item(item_id: int, verbose: bool = False) -> Stored:
    """One stored item."""
    if item_id not in ITEMS:
        raise HTTPException(status_code=404, detail=f"no item {item_id}")
    return ITEMS[item_id]


@app.get("/search", operation_id="search")
def search(q: str, tags: list[str] = Query([]), limit: int = 10) -> dict:
    return {"q": q, "tags": tags, "limit": limit}


@app.post("/items", operation_id="createItem", status_code=201, responses={409: {"model": Message}})
def create_item(item: Item) -> Stored:
    if any(stored.name == item.name for stored in ITEMS.values()):
        raise HTTPException(status_code=409, detail=f"{item.name} exists")
    stored = Stored(id=max(ITEMS) + 1, **item.model_dump())
    ITEMS[stored.id] = stored
    return stored


@app.put("/items/{item_id}", operation_id="replaceItem")
def replace_item(item_id: int, item: Item, x_request_id: str = Header()) -> dict:
    ITEMS[item_id] = Stored(id=item_id, **item.model_dump())
    return {"id": item_id, "request": x_request_id, "item": item.model_dump()}


@app.delete("/items/{item_id}", operation_id="deleteItem", status_code=204)
def delete_item(item_id: int) -> Response:
    ITEMS.pop(item_id, None)
    return Response(status_code=204)


@app.get("/secret", operation_id="secret", responses={401: {"model": Message}})
def secret(key: Optional[str] = Security(API_KEY)) -> dict:
    if key != "sesame":
        raise HTTPException(status_code=401, detail="wrong key")
    return {"secret": 42}


@app.get(
    "/ticks",
    operation_id="ticks",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}},
)
async def ticks(count: int = 3, fail: bool = False):
    async def events():
        for n in range(count):
            yield {"id": str(n + 1), "data": json.dumps({"n": n})}
            await asyncio.sleep(0.01)
        if fail:
            yield {"event": "error", "data": json.dumps({"detail": "the ticker broke"})}

    return EventSourceResponse(events())


@app.get("/motd", operation_id="motd", response_class=PlainTextResponse)
def motd() -> str:
    return "hello from FastAPI"


@app.post(
    "/upload",
    operation_id="upload",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def upload(request: Request) -> dict:
    return {"size": len(await request.body())}


@app.get(
    "/liar",
    operation_id="liar",
    response_model=None,
    responses={200: {"content": {"application/json": {"schema": {"type": "integer"}}}}},
)
def liar():
    return "many"


@app.get("/slow", operation_id="slow")
async def slow(request: Request, ms: int = 5000) -> dict:
    STATS["slow_started"] += 1
    deadline = asyncio.get_running_loop().time() + ms / 1000
    while asyncio.get_running_loop().time() < deadline:
        if await request.is_disconnected():
            STATS["slow_cancelled"] += 1
            return {"done": False}
        await asyncio.sleep(0.02)
    STATS["slow_finished"] += 1
    return {"done": True}


@app.get("/stats", operation_id="stats")
def stats() -> dict:
    return STATS
