-- Portcullis sliding-window rate limit: check every window and, only if all have room,
-- count the request in all of them. Atomic: Redis runs a script without interleaving.
--
-- KEYS[i]: one hash per (policy, window, key) with fields i (window index), c (count in
--          window i) and p (count in window i-1).
-- ARGV[2i-1], ARGV[2i]: the window's limit and its length in milliseconds.
-- Returns {allowed, then per window: exceeded, estimate x 1000, ms until the window ends}.
-- The clock is the Redis server's, so every gateway instance agrees on window edges.
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {1}
local state = {}
for i = 1, #KEYS do
  local limit = tonumber(ARGV[2 * i - 1])
  local per = tonumber(ARGV[2 * i])
  local idx = math.floor(now / per)
  local h = redis.call('HMGET', KEYS[i], 'i', 'c', 'p')
  local seen = tonumber(h[1])
  local cur, prev = 0, 0
  if seen == idx then
    cur = tonumber(h[2]) or 0
    prev = tonumber(h[3]) or 0
  elseif seen == idx - 1 then
    prev = tonumber(h[2]) or 0
  end
  local elapsed = now - idx * per
  local estimate = prev * (per - elapsed) / per + cur
  local exceeded = 0
  if limit - estimate < 1 then
    exceeded = 1
    out[1] = 0
  end
  state[i] = {idx, cur, prev, per}
  out[3 * i - 1] = exceeded
  out[3 * i] = math.floor(estimate * 1000)
  out[3 * i + 1] = per - elapsed
end
if out[1] == 1 then
  for i = 1, #KEYS do
    local s = state[i]
    redis.call('HSET', KEYS[i], 'i', s[1], 'c', s[2] + 1, 'p', s[3])
    redis.call('PEXPIRE', KEYS[i], 2 * s[4])
  end
end
return out
