import { startHooksStandIn, type HooksStandIn } from '../../testing/slack-hooks';

/** The response URL stand-in answers as Slack documents its response URLs. */

describe('the response URL stand-in', () => {
  let hooks: HooksStandIn;

  beforeAll(async () => {
    hooks = await startHooksStandIn();
  });
  afterEach(() => {
    hooks.reset();
  });
  afterAll(() => hooks.close());

  const post = async (url: string, body: string, method = 'POST') => {
    const res = await fetch(url, {
      method,
      headers: { 'Content-Type': 'application/json' },
      ...(method === 'POST' ? { body } : {}),
    });
    return [res.status, await res.text(), res.headers.get('retry-after')] as const;
  };

  it('issues URLs under its prefix and takes five posts on each, the sixth refused used_url', async () => {
    const url = hooks.issue();
    expect(url.startsWith(hooks.prefix)).toBe(true);
    expect(url).not.toBe(hooks.issue());
    for (let use = 1; use <= 5; use += 1) {
      expect(await post(url, JSON.stringify({ text: `use ${use}` }))).toEqual([200, 'ok', null]);
    }
    expect(await post(url, '{"text":"sixth"}')).toEqual([404, 'used_url', null]);
    expect(hooks.postsTo(url).map((p) => [p.body.text, p.status])).toEqual([
      ['use 1', 200],
      ['use 2', 200],
      ['use 3', 200],
      ['use 4', 200],
      ['use 5', 200],
      ['sixth', 404],
    ]);
  });

  it('refuses a URL 30 minutes after it was issued, one it never issued, and bad messages', async () => {
    const old = hooks.issue('actions', Date.now() - 30 * 60_000);
    expect(await post(old, '{"text":"late"}')).toEqual([404, 'expired_url', null]);
    expect(await post(`${hooks.prefix}commands/T0001/nope`, '{"text":"x"}')).toEqual([
      404,
      'invalid_url',
      null,
    ]);
    const url = hooks.issue();
    expect(await post(url, '{"response_type":"ephemeral"}')).toEqual([400, 'no_text', null]);
    expect(await post(url, 'text=hi')).toEqual([400, 'invalid_payload', null]);
    expect(await post(url, '[1]')).toEqual([400, 'invalid_payload', null]);
    expect(await post(url, '', 'GET')).toEqual([405, 'method_not_allowed', null]);
    // A refused post uses nothing: blocks alone, or delete_original alone, are messages.
    expect(await post(url, '{"blocks":[]}')).toEqual([200, 'ok', null]);
    expect(await post(url, '{"delete_original":true}')).toEqual([200, 'ok', null]);
  });

  it('answers the next posts as a rule says, then as Slack again', async () => {
    const url = hooks.issue();
    hooks.answer({ status: 429, headers: { 'retry-after': '7' }, times: 2 });
    expect(await post(url, '{"text":"a"}')).toEqual([429, '', '7']);
    expect(await post(url, '{"text":"b"}')).toEqual([429, '', '7']);
    expect(await post(url, '{"text":"c"}')).toEqual([200, 'ok', null]);
  });
});
