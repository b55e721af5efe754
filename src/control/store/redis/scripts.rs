//! The Lua scripts behind [`super::RedisStore`]: each store operation that touches more
//! than one key is one script, so Redis runs it atomically (no other client sees half of
//! it, and no crash of voxgate can leave half of it behind).
//!
//! Every script takes the key prefix (the `{name}` hash tag, so all keys of one store live
//! in one cluster slot) as `ARGV[1]` and builds its keys from it; the key layout is
//! documented in [`super`]. Times (`now`, due times, leases) are passed and stored as
//! decimal microsecond strings and never converted to Lua numbers (whose `tostring` would
//! switch to exponent notation); entry ids are Lua numbers (exact below 2^53).
//!
//! The scripts must never call anything that blocks (no `BLPOP`, no `XREADGROUP BLOCK`).

/// Helpers every script starts with.
const PRELUDE: &str = r"
local P = ARGV[1]
local GROUP = 'deliverers'
local function k(...) return P .. ':' .. table.concat({...}, ':') end
local function ekey(sink, id) return k('e', sink, id) end
local function stream(sink) return k('outbox', sink) end
local function order(sink, call) return k('order', sink, call) end
local function ready(sink) return k('ready', sink) end
local function sid(id) return '0-' .. id end

-- The call's earliest entry for `sink` that is neither acknowledged nor dead.
local function head(sink, call)
  local h = redis.call('ZRANGE', order(sink, call), 0, 0)[1]
  if h then return tonumber(h) end
  return nil
end

-- After a change to the call's entries: the ready set holds the call's head (and no
-- other entry of the call), scored by the head's due time or lease end.
local function rehead(sink, call, before)
  local after = head(sink, call)
  if before ~= after then
    if before then redis.call('ZREM', ready(sink), before) end
    if after then
      redis.call('ZADD', ready(sink), redis.call('HGET', ekey(sink, after), 't'), after)
    end
  end
end

-- One outbox entry per event per sink, ids in that order, all due `now`.
local function enqueue(call, now, sinks, events)
  for _, ev in ipairs(events) do
    for _, sink in ipairs(sinks) do
      local id = redis.call('INCR', k('seq'))
      redis.call('XADD', stream(sink), sid(id), 'call', call, 'event', ev)
      redis.call('HSET', ekey(sink, id), 'st', 'p', 't', now, 'a', 0, 'c', call)
      local before = head(sink, call)
      redis.call('ZADD', order(sink, call), id, id)
      rehead(sink, call, before)
      redis.call('INCR', k('live'))
    end
  end
end

-- The list ARGV[from + 1 .. from + n] where n = ARGV[from], and the index after it.
local function list(from)
  local n = tonumber(ARGV[from])
  local out = {}
  for i = 1, n do out[i] = ARGV[from + i] end
  return out, from + n + 1
end
";

/// `ARGV`: prefix, call id, record JSON, state, campaign (`''`: none), created (µs),
/// now (µs), sinks (counted list), the first event's JSON. Returns `{1, ''}` when
/// stored, `{0, existing record JSON}` when the id is known (nothing written).
const CREATE: &str = r"
local call = ARGV[2]
local ck = k('call', call)
local existing = redis.call('HGET', ck, 'record')
if existing then return {0, existing} end
redis.call('HSET', ck, 'record', ARGV[3], 'state', ARGV[4], 'seq', 1)
redis.call('ZADD', k('calls'), ARGV[6], call)
if ARGV[5] ~= '' then redis.call('ZADD', k('campaign', ARGV[5]), ARGV[6], call) end
local sinks, next = list(8)
enqueue(call, ARGV[7], sinks, {ARGV[next]})
return {1, ''}
";

/// `ARGV`: prefix, call id, lock token, record JSON, state, last seq, old campaign, new
/// campaign (`''`: none), created (µs), now (µs), sinks (counted), events (counted).
/// Writes only while the caller still holds the call's lock (returns 0 otherwise, having
/// written nothing), then releases it. Returns 1.
const UPDATE: &str = r"
local call = ARGV[2]
local lock = k('lock', call)
if redis.call('GET', lock) ~= ARGV[3] then return 0 end
redis.call('HSET', k('call', call), 'record', ARGV[4], 'state', ARGV[5], 'seq', ARGV[6])
redis.call('ZADD', k('calls'), ARGV[9], call)
if ARGV[7] ~= '' and ARGV[7] ~= ARGV[8] then redis.call('ZREM', k('campaign', ARGV[7]), call) end
if ARGV[8] ~= '' then redis.call('ZADD', k('campaign', ARGV[8]), ARGV[9], call) end
local sinks, next = list(11)
local events = list(next)
enqueue(call, ARGV[10], sinks, events)
redis.call('DEL', lock)
return 1
";

/// `ARGV`: prefix, call id, lock token. Releases the call's lock if the token still
/// holds it.
const UNLOCK: &str = r"
local lock = k('lock', ARGV[2])
if redis.call('GET', lock) == ARGV[3] then redis.call('DEL', lock) end
return 1
";

/// `ARGV`: prefix, sink, now (µs), lease end (µs), max, consumer. Leases the oldest due
/// heads (one per call), moves them into `consumer`'s pending list in the consumer group
/// (taking them over from a dead instance's consumer if its lease ran out) and returns
/// `{id, attempts, has_error, error, event JSON}` per entry, oldest first.
const CLAIM: &str = r"
local sink, now, lease_end, max, consumer = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
local due = redis.call('ZRANGEBYSCORE', ready(sink), '-inf', now)
local ids = {}
for i, id in ipairs(due) do ids[i] = tonumber(id) end
table.sort(ids)
local out = {}
for i = 1, math.min(max, #ids) do
  local id = ids[i]
  local ek = ekey(sink, id)
  redis.call('HSET', ek, 'st', 'l', 't', lease_end)
  local attempts = redis.call('HINCRBY', ek, 'a', 1)
  local err = redis.call('HGET', ek, 'err')
  redis.call('ZADD', ready(sink), lease_end, id)
  redis.call('XCLAIM', stream(sink), GROUP, consumer, 0, sid(id), 'FORCE', 'JUSTID')
  local entry = redis.call('XRANGE', stream(sink), sid(id), sid(id))[1]
  out[#out + 1] = {id, attempts, err and 1 or 0, err or '', entry[2][4]}
end
return out
";

/// `ARGV`: prefix, sink, ids (counted). Deletes each entry of `sink` that is in the
/// outbox (dead or not); ignores the others. Returns 1.
const ACK: &str = r"
local sink = ARGV[2]
local ids = list(3)
for _, id in ipairs(ids) do
  local ek = ekey(sink, id)
  local st, call = unpack(redis.call('HMGET', ek, 'st', 'c'))
  if st then
    redis.call('XACK', stream(sink), GROUP, sid(id))
    redis.call('XDEL', stream(sink), sid(id))
    redis.call('DEL', ek)
    if st == 'd' then
      redis.call('ZREM', k('dead'), sink .. ':' .. id)
    else
      local before = head(sink, call)
      redis.call('ZREM', order(sink, call), id)
      redis.call('DECR', k('live'))
      rehead(sink, call, before)
    end
  end
end
return 1
";

/// `ARGV`: prefix, sink, id, due (µs), error. Puts a pending or leased entry back,
/// due at the given time. Returns 0 if the entry is not in the outbox or is dead.
const RETRY_LATER: &str = r"
local sink, id = ARGV[2], tonumber(ARGV[3])
local ek = ekey(sink, id)
local st = redis.call('HGET', ek, 'st')
if not st or st == 'd' then return 0 end
redis.call('HSET', ek, 'st', 'p', 't', ARGV[4], 'err', ARGV[5])
redis.call('XACK', stream(sink), GROUP, sid(id))
if redis.call('ZSCORE', ready(sink), id) then redis.call('ZADD', ready(sink), ARGV[4], id) end
return 1
";

/// `ARGV`: prefix, sink, id, error. Parks the entry as a dead letter (a dead letter
/// keeps its place and takes the new error). Returns 0 if it is not in the outbox.
const DEAD_LETTER: &str = r"
local sink, id = ARGV[2], tonumber(ARGV[3])
local ek = ekey(sink, id)
local st, call = unpack(redis.call('HMGET', ek, 'st', 'c'))
if not st then return 0 end
redis.call('HSET', ek, 'err', ARGV[4])
if st ~= 'd' then
  local before = head(sink, call)
  redis.call('HSET', ek, 'st', 'd')
  redis.call('ZREM', order(sink, call), id)
  redis.call('DECR', k('live'))
  redis.call('XACK', stream(sink), GROUP, sid(id))
  redis.call('ZADD', k('dead'), id, sink .. ':' .. id)
  rehead(sink, call, before)
end
return 1
";

/// `ARGV`: prefix, sink, id, now (µs). Puts a dead letter back, due now, attempts 0.
/// Returns 0 if the sink has no dead letter with this id.
const REPLAY_DEAD: &str = r"
local sink, id = ARGV[2], tonumber(ARGV[3])
local ek = ekey(sink, id)
local st, call = unpack(redis.call('HMGET', ek, 'st', 'c'))
if st ~= 'd' then return 0 end
local before = head(sink, call)
redis.call('HSET', ek, 'st', 'p', 't', ARGV[4], 'a', 0)
redis.call('ZADD', order(sink, call), id, id)
redis.call('ZREM', k('dead'), sink .. ':' .. id)
redis.call('INCR', k('live'))
rehead(sink, call, before)
return 1
";

/// `ARGV`: prefix, limit (≥ 1). Dead letters of every sink, oldest first, as
/// `{sink, id, attempts, has_error, error, event JSON}`.
const LIST_DEAD: &str = r"
local out = {}
for _, m in ipairs(redis.call('ZRANGE', k('dead'), 0, tonumber(ARGV[2]) - 1)) do
  local sink, id = string.match(m, '^(.-):(%d+)$')
  local attempts, err = unpack(redis.call('HMGET', ekey(sink, id), 'a', 'err'))
  local entry = redis.call('XRANGE', stream(sink), sid(id), sid(id))[1]
  out[#out + 1] = {sink, tonumber(id), tonumber(attempts), err and 1 or 0, err or '', entry[2][4]}
end
return out
";

/// `ARGV`: prefix, index key suffix (`calls` or `campaign:{id}`), cursor score (`''`:
/// from the start), cursor call id, state (`''`: any), limit. A page of call records,
/// ordered by (created, call id), after the cursor.
const LIST_CALLS: &str = r"
local index = P .. ':' .. ARGV[2]
local after_score, after_id, state, limit = ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local from = '-inf'
if after_score ~= '' then from = after_score end
local out = {}
local offset = 0
while #out < limit do
  local chunk = redis.call('ZRANGEBYSCORE', index, from, '+inf', 'WITHSCORES', 'LIMIT', offset, 256)
  if #chunk == 0 then break end
  offset = offset + #chunk / 2
  for i = 1, #chunk, 2 do
    local id, score = chunk[i], chunk[i + 1]
    local past = after_score == '' or tonumber(score) > tonumber(after_score) or id > after_id
    if past then
      local record, st = unpack(redis.call('HMGET', k('call', id), 'record', 'state'))
      if record and (state == '' or st == state) then
        out[#out + 1] = record
        if #out >= limit then break end
      end
    end
  end
end
return out
";

/// The scripts, compiled once per store (`redis::Script` sends `EVALSHA` and falls back
/// to `EVAL` when Redis does not have the script yet, e.g. after a restart).
pub(super) struct Scripts {
    pub create: redis::Script,
    pub update: redis::Script,
    pub unlock: redis::Script,
    pub claim: redis::Script,
    pub ack: redis::Script,
    pub retry_later: redis::Script,
    pub dead_letter: redis::Script,
    pub replay_dead: redis::Script,
    pub list_dead: redis::Script,
    pub list_calls: redis::Script,
}

impl Scripts {
    pub fn new() -> Self {
        let script = |body: &str| redis::Script::new(&format!("{PRELUDE}{body}"));
        Self {
            create: script(CREATE),
            update: script(UPDATE),
            unlock: script(UNLOCK),
            claim: script(CLAIM),
            ack: script(ACK),
            retry_later: script(RETRY_LATER),
            dead_letter: script(DEAD_LETTER),
            replay_dead: script(REPLAY_DEAD),
            list_dead: script(LIST_DEAD),
            list_calls: script(LIST_CALLS),
        }
    }
}
