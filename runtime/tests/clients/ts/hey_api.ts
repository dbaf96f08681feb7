// A program a TypeScript user writes against the client @hey-api/openapi-ts generates from the
// demo node's /openapi.json (into ./gen). It compiles under `tsc --strict` only if the
// generated types are right: `tick.n` is a number with no cast. Run: node out/hey_api.js.
import { client } from './gen/client.gen';
import { demoAdd, demoFail, demoTicks, gatewaySubscribeGet } from './gen/sdk.gen';
import type { CallError } from './gen/types.gen';

function check(condition: boolean, what: string): asserts condition {
  if (!condition) throw new Error(`hey-api: ${what}`);
}

async function main(): Promise<void> {
  // `servers` in the document is the node's address: the generated client already points there.
  check(client.getConfig().baseUrl === process.argv[2], `baseUrl ${client.getConfig().baseUrl}`);

  const added = await demoAdd({ body: { a: 2, b: 40 } });
  check(added.data?.sum === 42, `demo/add answered ${JSON.stringify(added.data)}`);

  const failed = await demoFail({ body: { reason: 'hey-api' } });
  check(failed.response.status === 409, `demo/fail status ${failed.response.status}`);
  const error: CallError | undefined = failed.error;
  check(error?.code === 'DEMO_FAILED', `demo/fail error ${JSON.stringify(error)}`);

  // A typed subscription: the stream yields the `data` of every event. The end is the
  // `completed` event (data `{}`), seen in onSseEvent before it is yielded.
  let ended = false;
  const ticks: number[] = [];
  const { stream } = await demoTicks({
    body: { count: 3, intervalMs: 1 },
    onSseEvent: (event) => {
      if (event.event === 'completed' || event.event === 'error') ended = true;
    },
  });
  for await (const tick of stream) {
    if (ended) break;
    ticks.push(tick.n);
  }
  check(JSON.stringify(ticks) === '[1,2,3]', `demo/ticks gave ${JSON.stringify(ticks)}`);

  // The generic GET route takes the input as JSON text.
  let getEnded = false;
  const items: unknown[] = [];
  const get = await gatewaySubscribeGet({
    query: { operation: 'demo/ticks', input: JSON.stringify({ count: 2, intervalMs: 1 }) },
    onSseEvent: (event) => {
      if (event.event === 'completed') getEnded = true;
    },
  });
  for await (const item of get.stream) {
    if (getEnded) break;
    items.push(item);
  }
  check(JSON.stringify(items) === '[{"n":1},{"n":2}]', `GET /subscribe gave ${JSON.stringify(items)}`);
  console.log('hey-api client ok');
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
