// The official TypeScript MCP SDK against the demo node's /mcp (per-operation tools). Every
// declared error and bad input must come back as an `isError` result that passes the SDK's
// own checks (it validates structuredContent against each tool's outputSchema and throws when
// that fails). Run: node out/mcp_sdk.js http://HOST:PORT/mcp.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

function check(condition: boolean, what: string): asserts condition {
  if (!condition) throw new Error(`mcp sdk: ${what}`);
}

function errorCode(result: unknown): string | undefined {
  const content = (result as { content?: Array<{ type: string; text?: string }> }).content;
  const text = content?.find((c) => c.type === 'text')?.text;
  return text === undefined ? undefined : (JSON.parse(text) as { error?: { code?: string } }).error?.code;
}

async function main(): Promise<void> {
  const url = process.argv[2];
  check(url !== undefined, 'usage: node out/mcp_sdk.js URL');
  const client = new Client({ name: 'alknet-test', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(url)));

  const { tools } = await client.listTools();
  const names = tools.map((t) => t.name);
  for (const name of ['demo.add', 'demo.echo', 'demo.fail', 'demo.sleep']) {
    check(names.includes(name), `${name} missing from ${names.join(', ')}`);
  }
  check(!names.includes('demo.ask_peer'), 'demo.ask_peer needs a connection MCP has not');
  check(!names.includes('demo.ticks'), 'subscriptions are not tools');

  const added = await client.callTool({ name: 'demo.add', arguments: { a: 2, b: 40 } });
  check(!added.isError && JSON.stringify(added.structuredContent) === '{"sum":42}', `demo.add: ${JSON.stringify(added)}`);

  // Each of these is an isError result, not an exception from the SDK's schema checks.
  const failures: Array<[string, Record<string, unknown>, string]> = [
    ['demo.fail', { reason: 'sdk' }, 'DEMO_FAILED'],
    ['demo.add', { a: 'x', b: 1 }, 'INVALID_INPUT'],
    ['demo.add', { a: 1, b: 2, c: 3 }, 'INVALID_INPUT'],
    ['demo.echo', {}, 'INVALID_INPUT'],
  ];
  for (const [name, args, code] of failures) {
    const result = await client.callTool({ name, arguments: args });
    check(result.isError === true, `${name} ${JSON.stringify(args)} was not an error: ${JSON.stringify(result)}`);
    check(errorCode(result) === code, `${name} ${JSON.stringify(args)}: ${JSON.stringify(result)}`);
  }
  const echoed = await client.callTool({ name: 'demo.echo', arguments: { input: [1, 'two'] } });
  check(JSON.stringify(echoed.structuredContent) === '{"result":[1,"two"]}', `demo.echo: ${JSON.stringify(echoed)}`);
  await client.close();
  console.log('mcp sdk client ok');
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
