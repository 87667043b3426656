import { startSlackApiStandIn, type SlackApiStandIn } from '../../testing/slack-api';

/** The Slack Web API stand-in answers as Slack documents its contract. */

const TOKEN = 'xoxb-standin-token';

describe('the Slack Web API stand-in', () => {
  let slack: SlackApiStandIn;

  beforeAll(async () => {
    slack = await startSlackApiStandIn([TOKEN]);
  });
  afterEach(() => {
    slack.reset();
  });
  afterAll(() => slack.close());

  const post = async (
    method: string,
    body: string,
    headers: Record<string, string> = {},
  ): Promise<{ status: number; retryAfter: string | null; json: any }> => {
    const res = await fetch(`${slack.url}${method}`, { method: 'POST', headers, body });
    return {
      status: res.status,
      retryAfter: res.headers.get('retry-after'),
      json: await res.json(),
    };
  };
  const form = { 'Content-Type': 'application/x-www-form-urlencoded' };
  const json = { 'Content-Type': 'application/json; charset=utf-8' };
  const auth = { Authorization: `Bearer ${TOKEN}` };

  it('answers a form call with the bearer token ok, and records it with its arguments as strings', async () => {
    const answer = await post('chat.postMessage', 'channel=C1&text=hi&thread_ts=1.2', {
      ...form,
      ...auth,
    });
    expect(answer.status).toBe(200);
    expect(answer.json).toMatchObject({ ok: true, channel: 'C1', message: { text: 'hi' } });
    expect(typeof answer.json.ts).toBe('string');
    expect(slack.calls).toEqual([
      {
        method: 'chat.postMessage',
        token: TOKEN,
        args: { channel: 'C1', text: 'hi', thread_ts: '1.2' },
        contentType: 'application/x-www-form-urlencoded',
        status: 200,
      },
    ]);
  });

  it('takes JSON bodies with the header token, and a form body carrying its token', async () => {
    expect((await post('chat.postMessage', '{"channel":"C2"}', { ...json, ...auth })).json.ok).toBe(
      true,
    );
    expect((await post('auth.test', `token=${TOKEN}`, form)).json).toEqual({ ok: true });
    expect(slack.calls.map((c) => [c.method, c.token, c.args.channel])).toEqual([
      ['chat.postMessage', TOKEN, 'C2'],
      ['auth.test', TOKEN, undefined],
    ]);
  });

  it('answers not_authed without a token and invalid_auth for an unknown one, with HTTP 200', async () => {
    expect(await post('auth.test', '', form)).toMatchObject({
      status: 200,
      json: { ok: false, error: 'not_authed' },
    });
    expect(
      await post('auth.test', '', { ...form, Authorization: 'Bearer xoxb-nope' }),
    ).toMatchObject({
      status: 200,
      json: { ok: false, error: 'invalid_auth' },
    });
    // A JSON body's token field is not a token: Slack reads it only from the header.
    expect((await post('auth.test', `{"token":"${TOKEN}"}`, json)).json.error).toBe('not_authed');
  });

  it('refuses other content types and malformed JSON as Slack does', async () => {
    expect((await post('auth.test', 'x', { ...auth, 'Content-Type': 'text/xml' })).json).toEqual({
      ok: false,
      error: 'invalid_post_type',
    });
    expect((await post('auth.test', '{', { ...auth, ...json })).json.error).toBe('invalid_json');
  });

  it('answers an error the test sets, for a number of calls or for good', async () => {
    slack.answer('chat.postMessage', { answer: { kind: 'error', error: 'channel_not_found' } });
    slack.answer('chat.postMessage', { answer: { kind: 'ok', fields: { extra: 1 } }, times: 1 });
    const first = await post('chat.postMessage', 'channel=C1', { ...form, ...auth });
    const second = await post('chat.postMessage', 'channel=C1', { ...form, ...auth });
    expect([first.json.extra, second.json]).toEqual([1, { ok: false, error: 'channel_not_found' }]);
  });

  it('rate-limits N calls with 429 and Retry-After in seconds, then answers again', async () => {
    slack.rateLimit('chat.postMessage', 2, 7);
    const answers = [];
    for (let i = 0; i < 3; i += 1) {
      answers.push(await post('chat.postMessage', 'channel=C1', { ...form, ...auth }));
    }
    expect(answers.map((a) => [a.status, a.retryAfter, a.json.ok])).toEqual([
      [429, '7', false],
      [429, '7', false],
      [200, null, true],
    ]);
    expect(answers[0]!.json.error).toBe('ratelimited');
    expect(slack.callsOf('chat.postMessage').map((c) => c.status)).toEqual([429, 429, 200]);
  });

  it('answers after a delay, another status, or resets the connection', async () => {
    slack.answer('a.b', { answer: { kind: 'ok' }, delayMs: 50, times: 1 });
    slack.answer('c.d', { answer: { kind: 'status', status: 503, body: '<html>busy</html>' } });
    slack.answer('e.f', { answer: { kind: 'reset' } });
    expect((await post('a.b', '', { ...form, ...auth })).json.ok).toBe(true);
    const res = await fetch(`${slack.url}c.d`, { method: 'POST', headers: { ...form, ...auth } });
    expect([res.status, await res.text()]).toEqual([503, '<html>busy</html>']);
    await expect(post('e.f', '', { ...form, ...auth })).rejects.toThrow();
    expect(slack.calls.map((c) => c.status)).toEqual([200, 503, 0]);
  });

  it('answers 404 off /api/<method>', async () => {
    const res = await fetch(slack.url.replace('/api/', '/other'), { method: 'POST' });
    expect(res.status).toBe(404);
    await res.text();
  });
});
