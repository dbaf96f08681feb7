// Headless Chromium (Debian's `chromium`, driven by playwright-core) against a node started with
// `--cors http://127.0.0.1:PAGE_PORT`: what a web page on that origin can do, and what a page on
// any other origin cannot. Run by runtime/tests/browser.rs:
//   node browser.mjs http://NODE_HTTP PAGE_PORT
// Prints "browser ok" when every check passed; exits 1 otherwise.
import http from 'node:http';
import net from 'node:net';
import { chromium } from 'playwright-core';

const [nodeUrl, pagePortText] = process.argv.slice(2);
const node = new URL(nodeUrl);
const CHROMIUM = process.env.ALKNET_CHROMIUM ?? '/usr/bin/chromium';

function check(condition, what) {
  if (!condition) throw new Error(`browser: ${what}`);
}

/** A page server: every path answers a blank page, so the browser has an origin to run in. */
function pageServer(port) {
  const server = http.createServer((_, response) => {
    response.writeHead(200, { 'content-type': 'text/html' });
    response.end('<!doctype html><title>alknet test page</title>');
  });
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
}

/**
 * A TCP proxy to the node that cuts the first connection once it has relayed the third SSE
 * item (`id: 3`), as a dropped network would; later connections pass through untouched.
 */
function cuttingProxy() {
  let cut = false;
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(node.port), node.hostname);
    client.pipe(upstream);
    let seen = '';
    upstream.on('data', (chunk) => {
      client.write(chunk);
      if (cut) return;
      seen += chunk.toString('latin1');
      if (/\nid: ?3\n/.test(seen) || seen.startsWith('id: 3\n')) {
        cut = true;
        client.destroy();
        upstream.destroy();
      }
    });
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, cutDone: () => cut })));
}

/** In the page: opens an EventSource and reports its items, end events and final state. */
async function eventSource(page, url, waitMs) {
  return page.evaluate(
    ({ url, waitMs }) =>
      new Promise((resolve) => {
        const items = [];
        const ends = [];
        const source = new EventSource(url);
        source.onmessage = (event) => items.push([event.lastEventId, JSON.parse(event.data)]);
        source.addEventListener('completed', () => ends.push('completed'));
        source.addEventListener('error', (event) => {
          if (event.data) ends.push('error');
        });
        const started = Date.now();
        const poll = setInterval(() => {
          // CLOSED (2) after the reconnection that Last-Event-ID: end turned away with 204.
          if (source.readyState === 2 || Date.now() - started > waitMs) {
            clearInterval(poll);
            const state = source.readyState;
            source.close();
            resolve({ items, ends, state });
          }
        }, 50);
      }),
    { url, waitMs },
  );
}

const subscribeUrl = (base, input) =>
  `${base}/subscribe?operation=demo/ticks&input=${encodeURIComponent(JSON.stringify(input))}`;

async function main() {
  const listed = await pageServer(Number(pagePortText));
  const unlisted = await pageServer(0);
  const proxy = await cuttingProxy();
  const proxyUrl = `http://127.0.0.1:${proxy.server.address().port}`;
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  try {
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${pagePortText}/`);

    // CORS: a JSON POST (preflighted) and a bearer token, from the listed origin.
    const calls = await page.evaluate(async (base) => {
      const post = (path, body, headers = {}) =>
        fetch(base + path, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...headers },
          body: JSON.stringify(body),
        }).then(async (r) => [r.status, await r.json()]);
      return {
        add: await post('/call', { operation: 'demo/add', input: { a: 2, b: 40 } }),
        admin: await post('/ops/demo/admin', {}, { authorization: 'Bearer alk_demo_admin_token' }),
        anonymous: await post('/ops/demo/admin', {}),
      };
    }, nodeUrl);
    check(calls.add[0] === 200 && calls.add[1].sum === 42, `add: ${JSON.stringify(calls.add)}`);
    check(calls.admin[0] === 200 && calls.admin[1].by === 'admin', `admin: ${JSON.stringify(calls.admin)}`);
    check(calls.anonymous[0] === 401, `anonymous admin: ${JSON.stringify(calls.anonymous)}`);

    // EventSource: the items once, the end once, then closed — no replay after the end.
    const finite = await eventSource(page, subscribeUrl(nodeUrl, { count: 3, intervalMs: 1 }), 10000);
    check(
      JSON.stringify(finite.items) === '[["1",{"n":1}],["2",{"n":2}],["3",{"n":3}]]',
      `finite items: ${JSON.stringify(finite.items)}`,
    );
    check(JSON.stringify(finite.ends) === '["completed"]', `finite ends: ${JSON.stringify(finite.ends)}`);
    check(finite.state === 2, `the EventSource did not stop (readyState ${finite.state})`);

    // A dropped connection: the browser reconnects with Last-Event-ID: 3 and the resumable
    // subscription goes on from item 4, with no gap and no duplicate.
    const resumed = await eventSource(page, subscribeUrl(proxyUrl, { count: 6, intervalMs: 40 }), 15000);
    check(proxy.cutDone(), 'the proxy never cut the stream');
    check(
      JSON.stringify(resumed.items.map(([id, item]) => [Number(id), item.n])) ===
        '[[1,1],[2,2],[3,3],[4,4],[5,5],[6,6]]',
      `resumed items: ${JSON.stringify(resumed.items)}`,
    );
    check(JSON.stringify(resumed.ends) === '["completed"]', `resumed ends: ${JSON.stringify(resumed.ends)}`);

    // The WebSocket accepts the listed origin.
    const wsUrl = `ws://${node.host}/alknet/call`;
    const socket = (p) =>
      p.evaluate(
        (url) =>
          new Promise((resolve) => {
            const ws = new WebSocket(url);
            ws.onopen = () => {
              ws.close();
              resolve('open');
            };
            ws.onerror = () => resolve('refused');
          }),
        wsUrl,
      );
    check((await socket(page)) === 'open', 'the listed origin could not open the WebSocket');

    // Any other origin: fetch blocked by CORS, EventSource refused, WebSocket refused.
    const other = await browser.newPage();
    await other.goto(`http://127.0.0.1:${unlisted.address().port}/`);
    const blocked = await other.evaluate(async (base) => {
      try {
        await fetch(base + '/call', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ operation: 'demo/add', input: { a: 1, b: 1 } }),
        });
        return 'answered';
      } catch (error) {
        return `blocked: ${error.name}`;
      }
    }, nodeUrl);
    check(blocked === 'blocked: TypeError', `an unlisted origin's fetch: ${blocked}`);
    const otherSource = await eventSource(other, subscribeUrl(nodeUrl, { count: 2, intervalMs: 1 }), 5000);
    check(otherSource.items.length === 0, `an unlisted origin got items: ${JSON.stringify(otherSource.items)}`);
    check((await socket(other)) === 'refused', 'an unlisted origin opened the WebSocket');
  } finally {
    await browser.close();
    listed.close();
    unlisted.close();
    proxy.server.close();
  }
  console.log('browser ok');
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
