-- Portcullis rate limit: check every window and, only if all have room, count the request in
-- all of them. Atomic: Redis runs a script without interleaving. The clock is the Redis
-- server's (microseconds), so every gateway instance agrees.
--
-- KEYS[i]: the state of one (policy, window, key).
-- ARGV[4i-3..4i]: algorithm (0 sliding_window, 1 token_bucket), requests, window length in
--   microseconds, burst.
--   sliding_window: a hash with i (window index), c (count in window i), p (count in i-1);
--     the estimate is p x (time left in window i) / per + c.
--   token_bucket (GCRA): a hash with t (the theoretical arrival time, microseconds) and i
--     (the interval it was computed with); admitted
--     when max(tat, now) + T <= now + burst x T, with T = per / requests.
-- Returns {allowed, then per window: exceeded, remaining after this request, microseconds
--   until a refused request would be admitted or an admitted one's quota is whole again}.
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {1}
local commit = {}
local repair = {}

local function sliding_wait(prev, cur, elapsed, per, limit)
  local budget = limit - 1
  local to_end = per - elapsed
  if cur <= budget and prev > 0 then
    local w = to_end - (budget - cur) * per / prev
    if w <= to_end then
      return math.max(0, math.ceil(w))
    end
  end
  local w2 = 0
  if cur > 0 then w2 = math.max(0, per - budget * per / cur) end
  return math.ceil(to_end + w2)
end

for i = 1, #KEYS do
  local algo = tonumber(ARGV[4 * i - 3])
  local limit = tonumber(ARGV[4 * i - 2])
  local per = tonumber(ARGV[4 * i - 1])
  local burst = tonumber(ARGV[4 * i])
  local exceeded, remaining, reset = 0, 0, 0
  if algo == 1 then
    -- Not rounded: a whole-microsecond interval would over-admit at high rates.
    local interval = per / limit
    local h = redis.call('HMGET', KEYS[i], 't', 'i')
    local tat = math.max(tonumber(h[1]) or 0, now)
    local was = tonumber(h[2])
    if was and was > 0 and was ~= interval then
      -- The rate changed (a reload): carry the bucket over in requests, not in time.
      tat = now + (tat - now) * interval / was
    end
    -- Never further ahead than a full bucket: an admitted request leaves tat within
    -- burst x T of the clock, so only a clock stepped back (NTP on the Redis host) gets
    -- here. The pulled-back tat is written even if this request is refused (below), so the
    -- key waits at most one interval instead of the step.
    if tat > now + burst * interval then
      tat = now + burst * interval
      repair[i] = {tat, interval}
    end
    local new_tat = tat + interval
    local allowed_until = now + burst * interval
    if new_tat > allowed_until then
      exceeded = 1
      reset = math.ceil(new_tat - allowed_until)
    else
      remaining = math.floor((allowed_until - new_tat) / interval)
      reset = math.ceil(new_tat - now)
      commit[i] = {1, new_tat, new_tat - now, interval}
    end
  else
    local idx = math.floor(now / per)
    local h = redis.call('HMGET', KEYS[i], 'i', 'c', 'p')
    local seen = tonumber(h[1])
    local cur, prev = 0, 0
    if seen == idx then
      cur = tonumber(h[2]) or 0
      prev = tonumber(h[3]) or 0
    elseif seen == idx - 1 or (seen and seen > idx) then
      -- The window before this one; or a later one (the clock on the Redis host stepped
      -- back), counted as the previous window too: no fresh quota, no lock-out beyond it.
      prev = tonumber(h[2]) or 0
    end
    local elapsed = now - idx * per
    local estimate = prev * (per - elapsed) / per + cur
    if limit - estimate < 1 then
      exceeded = 1
      reset = sliding_wait(prev, cur, elapsed, per, limit)
    else
      remaining = math.floor(limit - estimate - 1)
      reset = per - elapsed
      commit[i] = {0, idx, cur + 1, prev, 2 * per}
    end
  end
  if exceeded == 1 then out[1] = 0 end
  out[3 * i - 1] = exceeded
  out[3 * i] = remaining
  out[3 * i + 1] = reset
end
if out[1] == 0 then
  for i, r in pairs(repair) do
    redis.call('HSET', KEYS[i], 't', string.format('%.17g', r[1]), 'i', string.format('%.17g', r[2]))
    redis.call('PEXPIRE', KEYS[i], math.max(1, math.ceil((r[1] - now) / 1000)))
  end
end
if out[1] == 1 then
  for i = 1, #KEYS do
    local c = commit[i]
    if c[1] == 1 then
      -- Kept until the bucket is full again (then it equals no key at all).
      -- As text with full precision (Redis would cut a Lua number to an integer).
      redis.call('HSET', KEYS[i], 't', string.format('%.17g', c[2]), 'i', string.format('%.17g', c[4]))
      redis.call('PEXPIRE', KEYS[i], math.max(1, math.ceil(c[3] / 1000)))
    else
      redis.call('HSET', KEYS[i], 'i', c[2], 'c', c[3], 'p', c[4])
      redis.call('PEXPIRE', KEYS[i], math.ceil(c[5] / 1000))
    end
  end
end
return out
