import { eventCloudEvent, interactionCloudEvent, slackSource } from '../../lib/slack/cloud-events';

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
  });
});
