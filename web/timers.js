// Timer choices from the effective policy (GET /api/v1/rooms/{id}/policy → effective):
// only what the policy allows is offered.

export const EXPIRY_PRESETS = [10, 30, 60, 300, 3600, 86400, 7 * 86400, 30 * 86400];
export const BURN_PRESETS = [10, 30, 60, 300, 3600, 86400];

function label(seconds) {
  if (seconds < 60) return `${seconds} seconds`;
  if (seconds < 3600) return `${seconds / 60} minute${seconds === 60 ? '' : 's'}`;
  if (seconds < 86400) return `${seconds / 3600} hour${seconds === 3600 ? '' : 's'}`;
  return `${seconds / 86400} day${seconds === 86400 ? '' : 's'}`;
}

/**
 * The timer options a policy allows: `{value, label, expires?, burn?}`; value '' is
 * "send without a timer" and the label says what the policy then applies.
 */
export function timerChoices(policy) {
  const choices = [];
  const max = policy.expiration_max ?? null;
  const dflt = policy.expiration_default ?? null;
  let plain;
  if (dflt !== null) plain = `Policy default (disappears after ${label(dflt)})`;
  else if (max !== null) plain = `Policy maximum (disappears after ${label(max)})`;
  else plain = 'No timer';
  choices.push({ value: '', label: plain });
  for (const seconds of EXPIRY_PRESETS) {
    if (max === null || seconds <= max) {
      choices.push({ value: `expire:${seconds}`, label: `Disappears after ${label(seconds)}`, expires: seconds });
    }
  }
  if (policy.burn_on_read_allowed) {
    const burnMax = policy.burn_on_read_max ?? null;
    for (const seconds of BURN_PRESETS) {
      if (burnMax === null || seconds <= burnMax) {
        choices.push({ value: `burn:${seconds}`, label: `Burn ${label(seconds)} after reading`, burn: seconds });
      }
    }
  }
  return choices;
}

/** The send request's timer fields for a choice value. */
export function timerFields(value) {
  const [kind, seconds] = value.split(':');
  if (kind === 'expire') return { expires_in_seconds: Number(seconds) };
  if (kind === 'burn') return { burn_after_read_seconds: Number(seconds) };
  return {};
}
