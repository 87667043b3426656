import http from 'node:http';
import { RequestContexts, currentContext, runInContext, traceIdOf } from '../lib/request-context';

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

function request(headers: http.IncomingHttpHeaders): http.IncomingMessage {
  const req = new http.IncomingMessage(undefined as never);
  req.headers = headers;
  return req;
}

describe('traceIdOf', () => {
  it.each<[string, string | undefined]>([
    [`00-${TRACE_ID}-00f067aa0ba902b7-01`, TRACE_ID],
    [`00-${TRACE_ID.toUpperCase()}-00F067AA0BA902B7-00`, TRACE_ID],
    [`00-${'0'.repeat(32)}-00f067aa0ba902b7-01`, undefined],
    [`00-${TRACE_ID}-${'0'.repeat(16)}-01`, undefined],
    [`01-${TRACE_ID}-00f067aa0ba902b7-01`, undefined],
    [`00-${TRACE_ID}-00f067aa0ba902b7`, undefined],
    // Version 00 is exactly these four fields: nothing before or after them.
    [`x00-${TRACE_ID}-00f067aa0ba902b7-01`, undefined],
    [`00-${TRACE_ID}-00f067aa0ba902b7-01-00`, undefined],
    ['garbage', undefined],
  ])('%s → %s', (header, traceId) => {
    expect(traceIdOf(header)).toBe(traceId);
  });
});

describe('RequestContexts', () => {
  const contexts = new RequestContexts('X-Request-ID');

  it('takes a well-formed incoming id and the trace id, once per request', () => {
    const req = request({
      'x-request-id': 'd2a0c3b6-3a57-4a4e-9c1e-6c1c2f0a9b11#17',
      traceparent: `00-${TRACE_ID}-00f067aa0ba902b7-01`,
    });
    const context = contexts.of(req);
    expect(context).toEqual({
      requestId: 'd2a0c3b6-3a57-4a4e-9c1e-6c1c2f0a9b11#17',
      traceId: TRACE_ID,
    });
    expect(contexts.of(req)).toBe(context);
  });

  it.each([
    ['absent', undefined],
    ['empty', ''],
    ['too long', 'a'.repeat(129)],
    ['with a newline', 'abc\n{"level":"error"}'],
    ['with a quote', 'abc"def'],
    ['with an inner space', 'abc def'],
    ['with an inner tab', 'abc\tdef'],
    ['only whitespace', ' \t '],
  ])('makes a UUID v4 when the id is %s', (_name, id) => {
    const context = contexts.of(request(id === undefined ? {} : { 'x-request-id': id }));
    expect(context.requestId).toMatch(UUID_V4);
    // No traceId key at all: a log line spreads the context in.
    expect(Object.keys(context)).toEqual(['requestId']);
  });
  // HTTP leaves the whitespace around a field value out of the value (RFC 9110 §5.5), and Node's
  // parser drops it before the header reaches us: " abc" on the wire is the id "abc".
  it.each([' abc', 'abc ', '\tabc\t'])(
    'takes %j as the id without its surrounding whitespace',
    (id) => {
      expect(contexts.of(request({ 'x-request-id': id })).requestId).toBe('abc');
    },
  );
});

describe('runInContext', () => {
  it('follows promises and timers, and ends with the run', async () => {
    const context = { requestId: 'r1' };
    const seen = await runInContext(context, async () => {
      await new Promise((resolve) => setTimeout(resolve, 1));
      return currentContext();
    });
    expect(seen).toBe(context);
    expect(currentContext()).toBeUndefined();
  });
});
