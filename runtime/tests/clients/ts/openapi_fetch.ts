// A program a TypeScript user writes with openapi-typescript's types (./gen-fetch/schema.d.ts,
// from the demo node's /openapi.json) and openapi-fetch. It compiles under `tsc --strict` only
// if inputs are closed and the subscription item type is given. Run: node out/openapi_fetch.js.
import createClient from 'openapi-fetch';
import type { components, paths } from './gen-fetch/schema';

type Tick = paths['/ops/demo/ticks']['post']['responses'][200]['content']['text/event-stream'];
type CallError = components['schemas']['CallError'];
type AddInput = paths['/ops/demo/add']['post']['requestBody']['content']['application/json'];

function check(condition: boolean, what: string): asserts condition {
  if (!condition) throw new Error(`openapi-fetch: ${what}`);
}

async function main(): Promise<void> {
  const client = createClient<paths>({ baseUrl: process.argv[2] });

  const added = await client.POST('/ops/demo/add', { body: { a: 2, b: 40 } });
  check(added.data?.sum === 42, `demo/add answered ${JSON.stringify(added.data)}`);
  // Closed inputs are closed for the compiler too: an unknown field does not type-check (and
  // the node refuses it).
  // @ts-expect-error `c` is not a field of demo/add's input
  const closed: AddInput = { a: 1, b: 2, c: 3 };
  const extra = await client.POST('/ops/demo/add', { body: closed });
  check(extra.response.status === 422, `an unknown field got ${extra.response.status}`);

  const failed = await client.POST('/ops/demo/fail', { body: { reason: 'openapi-fetch' } });
  const error: CallError | undefined = failed.error;
  check(error?.code === 'DEMO_FAILED', `demo/fail error ${JSON.stringify(error)}`);

  // The subscription, read as a stream and split into events by hand.
  const streamed = await client.POST('/ops/demo/ticks', {
    body: { count: 3, intervalMs: 1 },
    parseAs: 'stream',
  });
  check(streamed.response.ok && streamed.data !== undefined, 'demo/ticks did not stream');
  const text = await new Response(streamed.data).text();
  const ticks: number[] = [];
  for (const block of text.split('\n\n')) {
    const data = block.split('\n').find((line) => line.startsWith('data:'));
    if (data === undefined || block.includes('event: completed')) continue;
    const tick = JSON.parse(data.slice('data:'.length)) as Tick;
    ticks.push(tick.n);
  }
  check(JSON.stringify(ticks) === '[1,2,3]', `demo/ticks gave ${JSON.stringify(ticks)}`);
  console.log('openapi-fetch client ok');
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
