// What operators see: one JSON log line per request with a request id (sent back in X-Request-Id and kept in
// the audit rows), protocol errors logged at info with their client and never a secret, and /metrics in
// Prometheus's format behind METRICS_TOKEN or on METRICS_PORT.
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { connect } from 'node:net';
import test from 'ava';
import * as oauth from 'oauth4webapi';
import { auditEvents } from './helpers/runtime.ts';
import { capturingLogger, startTestServer, type TestServer } from './helpers/server.ts';
import { insecure, registerConfidential, signInToNewSpa } from './helpers/oauth.ts';
import { cleanEnvironment, startNode } from './helpers/process.ts';
import { eventually, findFreePort } from './helpers/redis.ts';

const METRICS_TOKEN = 'm'.repeat(40);
const captured = capturingLogger();
let server: TestServer;

test.before(async () => {
  server = await startTestServer({ METRICS_TOKEN }, { logger: captured.logger });
});
test.after.always(async () => {
  await server?.close();
});

/** The JSON log lines written so far that `keep` keeps. */
function logLines(keep: (line: Record<string, unknown>) => boolean): Array<Record<string, unknown>> {
  return captured.lines.map((line) => JSON.parse(line) as Record<string, unknown>).filter(keep);
}

async function scrape(): Promise<string> {
  const response = await fetch(`${server.issuer}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
  if (response.status !== 200) throw new Error(`/metrics answered ${response.status}`);
  return response.text();
}

/** A sample's value in Prometheus's text format, or undefined when the series is absent. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

test.serial('each request gets one log line and an X-Request-Id; a caller’s own id is kept when it is safe to log', async (t) => {
  const answer = await fetch(`${server.issuer}/.well-known/openid-configuration`);
  const requestId = answer.headers.get('x-request-id')!;
  t.regex(requestId, /^[0-9a-f-]{36}$/);
  const [line, ...more] = logLines((entry) => entry.requestId === requestId && entry.component === 'http');
  t.is(more.length, 0, 'one line per request');
  t.like(line, { level: 30, method: 'GET', path: '/.well-known/openid-configuration', route: '/.well-known/openid-configuration', status: 200 });
  t.is(typeof line!.durationMs, 'number');

  const traced = await fetch(`${server.issuer}/jwks`, { headers: { 'x-request-id': 'edge-proxy:4711' } });
  t.is(traced.headers.get('x-request-id'), 'edge-proxy:4711');
  const forged = await fetch(`${server.issuer}/jwks`, { headers: { 'x-request-id': 'x", "level":60, "msg":"forged' } });
  t.regex(forged.headers.get('x-request-id')!, /^[0-9a-f-]{36}$/, 'an id that could forge log lines is replaced');
});

test.serial('a protocol error is logged at info with its endpoint, error and client, never the secret presented', async (t) => {
  const { client } = await registerConfidential(server, 'service');
  const wrongSecret = 'not-the-secret-but-still-a-secret-0123456789';
  const answer = await fetch(`${server.issuer}/token`, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from(`${client.client_id}:${wrongSecret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: 'grant_type=client_credentials',
  });
  t.is(answer.status, 401);
  const requestId = answer.headers.get('x-request-id');
  const [line] = logLines((entry) => entry.component === 'protocol' && entry.requestId === requestId);
  t.like(line, { level: 30, endpoint: 'token', error: 'invalid_client', clientId: client.client_id });
  t.like(logLines((entry) => entry.component === 'http' && entry.requestId === requestId)[0], { route: '/token', status: 401 });
  t.false(captured.lines.some((text) => text.includes(wrongSecret)), 'the secret is in no log line');

  const badRedirect = await fetch(`${server.issuer}/auth?client_id=${client.client_id}&response_type=code&redirect_uri=https://evil.example/cb&scope=openid`);
  t.is(badRedirect.status, 400);
  const [refused] = logLines((entry) => entry.component === 'protocol' && entry.requestId === badRedirect.headers.get('x-request-id'));
  t.like(refused, { endpoint: 'authorization', clientId: client.client_id });
  t.regex(String(refused!.error), /^(invalid_redirect_uri|unauthorized_client|invalid_request)$/);

  // A client that does not exist, named only in HTTP Basic credentials (client_secret_basic): named on the line too.
  const madeUp = await fetch(`${server.issuer}/token/introspection`, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from(`made-up%20client:${wrongSecret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: 'token=x',
  });
  t.is(madeUp.status, 401);
  t.like(logLines((entry) => entry.component === 'protocol' && entry.requestId === madeUp.headers.get('x-request-id'))[0], { error: 'invalid_client', clientId: 'made-up client' });
  t.false(captured.lines.some((text) => text.includes(wrongSecret)), 'the secret is in no log line');
});

test.serial('a request whose client went before an answer is logged and counted as 499 with its address; a failure’s error line carries the request id', async (t) => {
  const socket = connect(Number(new URL(server.issuer).port), '127.0.0.1');
  await once(socket, 'connect');
  socket.write('POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\nX-Request-Id: gone-before-the-answer\r\n\r\ngrant_type=');
  await new Promise((resolve) => setTimeout(resolve, 100));
  socket.destroy();
  const line = await eventually(async () => {
    const [found] = logLines((entry) => entry.component === 'http' && entry.requestId === 'gone-before-the-answer');
    if (!found) throw new Error('not logged yet');
    return found;
  }, 10_000);
  t.like(line, { route: '/token', status: 499, aborted: true, ip: '127.0.0.1' });
  t.true(sample(await scrape(), 'gatehouse_http_requests_total{route="/token",method="POST",status="499"}')! >= 1);

  // A record the engine cannot read: the answer is a 500, and the error line says which request it was.
  const token = 'A'.repeat(43);
  await server.runtime.store.put(`AccessToken:${token}`, '{"unreadable', 60);
  const failed = await fetch(`${server.issuer}/me`, { headers: { authorization: `Bearer ${token}` } });
  t.is(failed.status, 500);
  t.like(logLines((entry) => entry.level === 50 && entry.requestId === failed.headers.get('x-request-id'))[0], { msg: 'protocol endpoint failed', method: 'GET', path: '/me' });
});

test.serial('an audit row carries the id of the request that wrote it', async (t) => {
  const { as, client, tokens } = await signInToNewSpa(server);
  await oauth.processRefreshTokenResponse(as, client, await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token!, insecure));
  const reuse = await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token!, insecure);
  t.is(reuse.status, 400);
  await server.runtime.auditTrail.flush();
  const [reused] = await auditEvents(server.runtime, 'refresh_token.reused', (event) => event.clientId === client.client_id);
  t.is(reused!.requestId, reuse.headers.get('x-request-id'));
});

test.serial('/metrics: refused without the token; with it, requests, tokens, protocol errors, audited events, dependencies, queues and the process', async (t) => {
  const without = await fetch(`${server.issuer}/metrics`);
  t.is(without.status, 401);
  t.is(without.headers.get('www-authenticate'), 'Bearer realm="metrics"');
  t.is((await fetch(`${server.issuer}/metrics`, { headers: { authorization: `Bearer ${'n'.repeat(40)}` } })).status, 401);

  const { client, secret } = await registerConfidential(server, 'service');
  const as = { issuer: server.issuer, token_endpoint: `${server.issuer}/token` };
  const before = await scrape();
  const issuedSeries = `gatehouse_tokens_issued_total{grant_type="client_credentials",client_id="${client.client_id}"}`;
  t.is(sample(before, issuedSeries), undefined);
  for (let count = 0; count < 3; count += 1) {
    await oauth.processClientCredentialsResponse(as, client, await oauth.clientCredentialsGrantRequest(as, client, oauth.ClientSecretBasic(secret), new URLSearchParams(), insecure));
  }
  const text = await scrape();
  t.is(sample(text, issuedSeries), 3);
  t.true(sample(text, 'gatehouse_http_requests_total{route="/token",method="POST",status="200"}')! >= 3);
  t.true(sample(text, 'gatehouse_http_request_duration_seconds_count{route="/token",method="POST"}')! >= 3);
  t.true(sample(text, 'gatehouse_protocol_errors_total{endpoint="token",error="invalid_client"}')! >= 1);
  t.true(sample(text, 'gatehouse_audit_events_total{action="refresh_token.reused",outcome="failure"}')! >= 1);
  t.true(sample(text, 'gatehouse_audit_events_total{action="login.succeeded",outcome="success"}')! >= 1);
  t.true(sample(text, 'gatehouse_dependency_call_duration_seconds_count{dependency="database",outcome="ok"}')! > 0);
  if (process.env.REDIS_URL) {
    t.true(sample(text, 'gatehouse_dependency_call_duration_seconds_count{dependency="store",outcome="ok"}')! > 0);
    // The token requests' limits were counted on the rate limiter's own connection.
    t.true(sample(text, 'gatehouse_dependency_call_duration_seconds_count{dependency="rate_limits",outcome="ok"}')! >= 3);
  }
  t.is(sample(text, 'gatehouse_queue_depth{queue="mail"}'), 0);
  t.is(sample(text, 'gatehouse_queue_depth{queue="logout_notices"}'), 0);
  t.true(sample(text, 'gatehouse_process_resident_memory_bytes')! > 0);
  t.regex(text, /^# TYPE gatehouse_http_request_duration_seconds histogram$/m);
});

test.serial('the sample Grafana dashboard asks only for metrics Gatehouse serves', async (t) => {
  const dashboard = JSON.parse(await readFile(new URL('../deploy/grafana/gatehouse.json', import.meta.url), 'utf8')) as { panels: Array<{ targets?: Array<{ expr: string }> }> };
  const expressions = dashboard.panels.flatMap((panel) => panel.targets ?? []).map((target) => target.expr);
  t.true(expressions.length >= 15);
  const served = new Set([...(await scrape()).matchAll(/^# TYPE (\S+) (\w+)$/gm)].flatMap(([, name, type]) => (
    type === 'histogram' ? [`${name}_bucket`, `${name}_sum`, `${name}_count`] : [name!]
  )));
  const asked = new Set(expressions.flatMap((expression) => expression.match(/\bgatehouse_\w+/g) ?? []));
  t.deepEqual([...asked].filter((name) => !served.has(name)), []);
  // Every instance reports the depth of the queues they share: summed, one queued mail would show as several.
  t.deepEqual(expressions.filter((expression) => /\bsum\b.*\bgatehouse_queue_depth\b/.test(expression)), []);
});

test.serial('rate-limit refusals are counted by limit', async (t) => {
  const limited = await startTestServer({ METRICS_TOKEN, TOKEN_LIMIT_PER_IP: '2/60' });
  t.teardown(() => limited.close());
  const post = () => fetch(`${limited.issuer}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'grant_type=client_credentials&client_id=nobody' });
  const statuses = [(await post()).status, (await post()).status, (await post()).status];
  t.deepEqual(statuses, [401, 401, 429]);
  const text = await (await fetch(`${limited.issuer}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).text();
  t.is(sample(text, 'gatehouse_rate_limited_total{limit="token-ip"}'), 1);
});

test('node src/main.ts: METRICS_PORT serves /metrics without a token; SIGTERM finishes the request under way, refuses new ones, closes kept-alive connections, and exits 0', async (t) => {
  const [port, metricsPort] = [await findFreePort(), await findFreePort()];
  const folder = await mkdtemp(path.join(os.tmpdir(), 'gatehouse-observability-'));
  const { child, finished } = startNode(['src/main.ts'], cleanEnvironment({
    PORT: String(port), METRICS_PORT: String(metricsPort), HOST: '127.0.0.1', DATA_DIR: folder, KEYS_DIR: folder, LOG_LEVEL: 'info',
  }));
  t.teardown(async () => {
    child.kill('SIGKILL');
    await rm(folder, { recursive: true, force: true });
  });
  const metrics = await eventually(async () => {
    const response = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
    if (response.status !== 200) throw new Error(String(response.status));
    return response.text();
  }, 60_000);
  t.regex(metrics, /^gatehouse_process_cpu_seconds_total /m);
  t.is((await fetch(`http://127.0.0.1:${port}/metrics`)).status, 403, 'not on the main port without a token');

  // Requests Node's parser refuses before the app sees them are answered, logged and counted too.
  const refusedByParser = async (request: string) => {
    const raw = connect(port, '127.0.0.1');
    await once(raw, 'connect');
    let reply = '';
    raw.setEncoding('utf8').on('data', (chunk: string) => (reply += chunk));
    raw.write(request);
    await once(raw, 'close');
    return reply;
  };
  t.regex(await refusedByParser(`GET /token HTTP/1.1\r\nHost: x\r\nX-Padding: ${'p'.repeat(20_000)}\r\n\r\n`), /^HTTP\/1\.1 431 /);
  t.regex(await refusedByParser('POST /token HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n'), /^HTTP\/1\.1 400 /);
  const counted = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  t.regex(counted, /^gatehouse_http_requests_total\{route="unparsed",method="OTHER",status="431"\} 1$/m);
  t.regex(counted, /^gatehouse_http_requests_total\{route="unparsed",method="OTHER",status="400"\} 1$/m);

  // A request under way: the server has its headers (it said 100 Continue), not yet its body.
  const body = 'grant_type=client_credentials&client_id=nobody';
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  let answer = '';
  socket.setEncoding('utf8').on('data', (chunk: string) => (answer += chunk));
  socket.write(`POST /token HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${body.length}\r\nExpect: 100-continue\r\n\r\n`);
  await eventually(async () => {
    if (!answer.startsWith('HTTP/1.1 100 Continue')) throw new Error('no 100 Continue yet');
  }, 10_000);
  child.kill('SIGTERM');
  await eventually(async () => {
    await fetch(`http://127.0.0.1:${port}/healthz`).then(() => { throw new Error('still accepting'); }, () => undefined);
  }, 10_000);
  socket.write(body);
  await eventually(async () => {
    if (!/\r\n\r\nHTTP\/1\.1 401 [^]*"invalid_client"/.test(answer)) throw new Error('no answer yet');
  }, 10_000);
  t.pass('the request under way got its answer');
  // The next request on that kept-alive connection is answered, but closes it, and /readyz turns the balancer away.
  const closed = once(socket, 'end');
  const answered = answer.length;
  socket.write(`GET /readyz HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
  await closed;
  const readiness = answer.slice(answered);
  t.regex(readiness, /^HTTP\/1\.1 503 /);
  t.regex(readiness, /\r\nConnection: close\r\n/i);
  t.regex(readiness, /"status":"stopping"/);
  socket.end();
  const result = await finished;
  t.is(result.code, 0, result.stderr);
  t.regex(result.stdout, /shutting down: finishing the requests under way/);
  t.regex(result.stdout, /"route":"unparsed","status":431,"error":"HPE_HEADER_OVERFLOW"/);
});
