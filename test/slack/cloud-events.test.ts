import {
  commandCloudEvent,
  commandName,
  eventCloudEvent,
  interactionCloudEvent,
  interactionId,
  slackSource,
} from '../../lib/slack/cloud-events';

describe('slackSource', () => {
  it('names the first candidate that is a workspace id, else unknown', () => {
    expect(slackSource('T0001', 'E0001')).toBe('https://slack.com/teams/T0001');
    expect(slackSource(undefined, 'E0001')).toBe('https://slack.com/teams/E0001');
    expect(slackSource('t0001/../x', 42)).toBe('unknown');
    expect(slackSource('T'.repeat(33))).toBe('unknown');
    expect(slackSource()).toBe('unknown');
  });
});

describe('eventCloudEvent', () => {
  it('takes the event id and type, the team as source and the body as sent as data', () => {
    const envelope = { type: 'event_callback', team_id: 'T1', event_id: 'Ev1' };
    const body = Buffer.from(`  ${JSON.stringify(envelope)}\n`);
    expect(eventCloudEvent(envelope, body, 'Ev1', 'app_mention')).toEqual({
      id: 'Ev1',
      type: 'com.slack.event.app_mention',
      source: 'https://slack.com/teams/T1',
      data: body,
    });
  });

  it('names the workspace (team_id) before the enterprise', () => {
    const envelope = { type: 'event_callback', team_id: 'T1', enterprise_id: 'E1' };
    expect(eventCloudEvent(envelope, Buffer.from('{}'), 'Ev1', 'app_mention')?.source).toBe(
      'https://slack.com/teams/T1',
    );
  });

  it('publishes no type that cannot be a header or a Trigger filter', () => {
    expect(eventCloudEvent({}, Buffer.from('{}'), 'Ev1', 'app mention')).toBeUndefined();
    expect(eventCloudEvent({}, Buffer.from('{}'), 'Ev1', '')).toBeUndefined();
  });
});

describe('interactionCloudEvent', () => {
  it('hashes the payload text as sent, sends it as data, and finds the team in the enterprise at last', () => {
    const payload = { type: 'view_submission', enterprise: { id: 'E9' } };
    expect(interactionCloudEvent('{"type":"view_submission"}', payload)).toEqual({
      // sha256 of the text, as `printf '%s' '{"type":"view_submission"}' | sha256sum` gives.
      id: 'sha256:14e2ccc198e1d04d6f9f0fa05fdbbd4824fba3f70c3cc42cadc43a079c6b9a69',
      type: 'com.slack.interaction.view_submission',
      source: 'https://slack.com/teams/E9',
      data: Buffer.from('{"type":"view_submission"}'),
    });
  });

  it('takes the payload’s team, then the user’s team, then the enterprise', () => {
    const payload = {
      type: 'block_actions',
      team: { id: 'T1' },
      user: { id: 'U1', team_id: 'T2' },
      enterprise: { id: 'E1' },
    };
    const source = (p: typeof payload | Record<string, unknown>) =>
      interactionCloudEvent('{}', { ...p, type: 'block_actions' })?.source;
    expect(source(payload)).toBe('https://slack.com/teams/T1');
    expect(source({ user: payload.user, enterprise: payload.enterprise })).toBe(
      'https://slack.com/teams/T2',
    );
    // Outside Enterprise Grid Slack sends `"enterprise": null` (and `team: null` for some views).
    expect(source({ team: null, user: payload.user, enterprise: null })).toBe(
      'https://slack.com/teams/T2',
    );
  });
});

describe('slash commands as CloudEvents', () => {
  it('names a command without its slash, only when it can be a type', () => {
    expect(commandName('/coffee')).toBe('coffee');
    expect(commandName('/coffee-dev')).toBe('coffee-dev');
    for (const bad of ['coffee', '/', '', '/a b', 'x/coffee', `/${'c'.repeat(65)}`]) {
      expect(commandName(bad)).toBeUndefined();
    }
  });

  it('takes the hash of the body as its id, the command as its type, the form as JSON data, the request’s time', () => {
    const body = Buffer.from('command=%2Fcoffee&text=status&team_id=T0001');
    const issuedAt = Date.UTC(2026, 11, 5, 12, 0, 0);
    const event = commandCloudEvent(
      body,
      { command: '/coffee', text: 'status', team_id: 'T0001', odd: 7 },
      issuedAt,
    );
    expect(event).toEqual({
      id: interactionId(body),
      type: 'com.slack.command.coffee',
      source: 'https://slack.com/teams/T0001',
      time: '2026-12-05T12:00:00.000Z',
      data: expect.any(Buffer),
    });
    // Strings only: a field that is not one is not passed on.
    expect(JSON.parse(event!.data.toString('utf8'))).toEqual({
      command: '/coffee',
      text: 'status',
      team_id: 'T0001',
    });
    expect(commandCloudEvent(body, { command: '/coffee' }, undefined)).not.toHaveProperty('time');
    expect(commandCloudEvent(body, { command: 'coffee' }, issuedAt)).toBeUndefined();
    expect(commandCloudEvent(body, { command: 7 }, issuedAt)).toBeUndefined();
  });

  it('an interaction carries the request’s time; a type that cannot be a header is not published', () => {
    const text = '{"type":"block_actions"}';
    expect(interactionCloudEvent(text, { type: 'block_actions' }, 0)?.time).toBe(
      '1970-01-01T00:00:00.000Z',
    );
    expect(interactionCloudEvent(text, { type: 'block actions' })).toBeUndefined();
  });
});

describe('Slack’s retry on a published event', () => {
  it('is carried as two extensions, and none when Slack did not retry', () => {
    const body = Buffer.from('{}');
    const retried = eventCloudEvent({ team_id: 'T1' }, body, 'Ev2', 'app_mention', {
      retryNum: 2,
      retryReason: 'http_timeout',
    });
    expect(retried?.extensions).toEqual({ slackretrynum: '2', slackretryreason: 'http_timeout' });
    expect(
      eventCloudEvent({}, body, 'Ev3', 'app_mention', { retryReason: 'http_error' })?.extensions,
    ).toEqual({ slackretryreason: 'http_error' });
    expect(eventCloudEvent({}, body, 'Ev4', 'app_mention', {})).not.toHaveProperty('extensions');
  });
});
