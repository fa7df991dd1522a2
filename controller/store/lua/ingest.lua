-- Sales: per event, decide its status, dedupe by event id, and accumulate the panel cell.
-- The batch arrives as one string (one line per event, fields split by '|'; ids cannot hold
-- '|' or newlines) so the client packs one argument, not ten per event. Per event Redis
-- does one HGET (cached per product within the batch) and one SADD; the cell, exclusion and
-- total increments are summed in Lua and written once per batch. The script is atomic: a
-- batch is in Redis entirely or not at all. One experiment per call: its keys share a slot.
-- KEYS: the experiment's state; ARGV: the base of its keys, batch; batch lines:
--   member|bucket|k|product|code|ts_ms|head_end_ms|units|revenue_micros|pre_reason|keep_s\n
-- (member, bucket: the event id's dedupe digest, computed by the client, see Dedupe; code: the
-- product's position among the experiment's sorted products; revenue in millionths, a whole
-- number).
-- Cells: period k's sums are one string, {base}:sums:{k}, four big-endian signed 64-bit
-- integers per product code c at #(4c) units, #(4c+1) revenue in millionths, #(4c+2) orders,
-- #(4c+3) head units, incremented with BITFIELD (a product never sold reads zero): 32 bytes
-- a product, read with one GET, where a hash cost ~290 bytes and a parse per field.
-- A period below the experiment's 'closed' mark is compacted (or being compacted): its sales
-- are 'late', counted nowhere (as the ingestor's own lateness check does), but a copy of a
-- sale counted before the close (a batch retried after a partial failure) is a 'dup' while
-- the period's markers last.
-- Dedupe: the event id's SHA-1 gives a 52-bit member (its first 13 hex digits) and a 32-bit
-- bucket hash (the next 8), both as decimal text from the client (the worker hashes; this
-- script would spend ~15% of its time on it); period k's markers are integer sets
-- {base}:seen:{k}:{bucket hash % buckets} (intset encoding, 8 bytes a member while a set holds
-- at most 512), kept keep_s seconds (until the period closes, plus a margin). A period's bucket
-- count is fixed at its first sale, from the sales remembered in the period before (~200 a
-- set), or for a first period from the experiment's products; {base}:seenb holds b:{k}
-- (buckets) and n:{k} (sales remembered) per period.
-- Every Lua string is interned (hashed, looked up, later swept): keys are built once per
-- batch and period, not per sale, and totals are summed by status before their keys are.
local out = {}
local ints, expire = {}, {}
local function add(t, key, field, v)
  local h = t[key]
  if not h then h = {}; t[key] = h end
  h[field] = (h[field] or 0) + v
end
local function buckets_for(e, k)
  local b = tonumber(redis.call('HGET', e.seenb, 'b:'..k))
  if not b then
    -- ~200 a set: from the sales of the period before, else one sale per product
    local prev = tonumber(redis.call('HGET', e.seenb, 'n:'..(tonumber(k) - 1)) or '')
    if not prev then
      prev = tonumber(redis.call('HGET', KEYS[1], 'n_products') or '') or 12800
    end
    b = 1
    while b * 200 < prev and b < 65536 do b = b * 2 end
    redis.call('HSET', e.seenb, 'b:'..k, b)
  end
  return b
end
local base = ARGV[1]
local e = {base = base, excluded = base..':excluded', seenb = base..':seenb', periods = {},
           closed = tonumber(redis.call('HGET', KEYS[1], 'closed') or '0'),
           units = {}, events = {}}
local pat = '([^|\n]*)|([^|\n]*)|([^|\n]*)|([^|\n]*)|([^|\n]*)|([^|\n]*)|([^|\n]*)|([^|\n]*)|([^|\n]*)|([^|\n]*)|([^|\n]*)\n'
for member, bh, k, prod, code, ts, head_end, units, revenue, reason, keep in string.gmatch(ARGV[2], pat) do
  local per = e.periods[k]
  if not per then
    per = {key = e.base..':a:'..k, recs = {}, sums = e.base..':sums:'..k,
           late = tonumber(k) < e.closed, u = {}, r = {}, n = {}, h = {}, fresh = 0,
           sets = {}, keep = {}}
    if not per.late then
      per.buckets = buckets_for(e, k)
    else  -- its markers, while they last: a late copy of a counted sale is a 'dup'
      per.buckets = tonumber(redis.call('HGET', e.seenb, 'b:'..k) or '')
    end
    per.seen = e.base..':seen:'..k..':'
    e.periods[k] = per
  end
  if per.late then
    local dup = false
    if per.buckets then
      dup = redis.call('SISMEMBER', per.seen..(tonumber(bh) % per.buckets), member) == 1
    end
    out[#out+1] = dup and 'dup' or 'late'
  else
    local status = reason
    local arm = ''
    if status == '' then
      local rec = per.recs[prod]
      if rec == nil then
        rec = redis.call('HGET', per.key, prod)
        per.recs[prod] = rec
      end
      if not rec then
        status = 'unassigned'
      else
        local a, bu, why = string.match(rec, '^([^|]*)|[^|]*|([^|]*)|(.*)$')
        arm = a
        local t = tonumber(ts)
        if bu ~= '' and t < tonumber(bu) then
          status = why
        elseif t < tonumber(head_end) then
          status = 'head'
        else
          status = 'ok'
        end
      end
    end
    -- a set's key is built (and interned) once a batch, and its expiry noted once per
    -- distinct keep_s text (the same for a period's sales in a batch from the worker)
    local b = tonumber(bh) % per.buckets
    local set = per.sets[b]
    if not set then set = per.seen..b; per.sets[b] = set; per.keep[set] = '' end
    local fresh = redis.call('SADD', set, member)
    if per.keep[set] ~= keep then
      per.keep[set] = keep
      local ttl = tonumber(keep)
      if (expire[set] or 0) < ttl then expire[set] = ttl end
    end
    if fresh == 1 then
      local u = tonumber(units)
      if status == 'ok' then
        local c = tonumber(code)
        local rv = tonumber(revenue)
        local acc = (per.r[c] or 0) + rv
        if acc > 9007199254740992 then
          -- past 2^53 a double drops units: write what is summed (exact) and start again
          redis.call('BITFIELD', per.sums, 'INCRBY', 'i64', '#'..string.format('%d', 4 * c + 1),
            string.format('%d', per.r[c] or 0))
          acc = rv
        end
        per.u[c] = (per.u[c] or 0) + u
        per.r[c] = acc
        per.n[c] = (per.n[c] or 0) + 1
      elseif status == 'head' then
        local c = tonumber(code)
        per.h[c] = (per.h[c] or 0) + u
      else
        add(ints, e.excluded, k..'|'..prod..'|'..status, u)
      end
      e.units[status] = (e.units[status] or 0) + u
      e.events[status] = (e.events[status] or 0) + 1
      per.fresh = per.fresh + 1
      out[#out+1] = status
    else
      out[#out+1] = 'dup'
    end
  end
end
for k, per in pairs(e.periods) do  -- sales remembered, for the next period's bucket count
  if per.fresh > 0 then add(ints, e.seenb, 'n:'..k, per.fresh) end
end
local totals = base..':totals'
for st, v in pairs(e.units) do add(ints, totals, 'units:'..st, v) end
for st, v in pairs(e.events) do add(ints, totals, 'events:'..st, v) end
for key, h in pairs(ints) do
  for f, v in pairs(h) do redis.call('HINCRBY', key, f, string.format('%d', v)) end
end
-- the cells: BITFIELD calls of up to 400 products' increments each (a call per product cost
-- ~5% of the script); numbers as '%d' text: Lua would print a large one as 1e+15
local function incr(ops, c, v)
  local n = #ops
  ops[n+1] = 'INCRBY'; ops[n+2] = 'i64'
  ops[n+3] = '#'..string.format('%d', c); ops[n+4] = string.format('%d', v)
end
for _, per in pairs(e.periods) do
  local ops = {}
  for c, u in pairs(per.u) do
    incr(ops, 4 * c, u); incr(ops, 4 * c + 1, per.r[c]); incr(ops, 4 * c + 2, per.n[c])
    if #ops >= 4800 then redis.call('BITFIELD', per.sums, unpack(ops)); ops = {} end
  end
  for c, h in pairs(per.h) do
    incr(ops, 4 * c + 3, h)
    if #ops >= 4800 then redis.call('BITFIELD', per.sums, unpack(ops)); ops = {} end
  end
  if #ops > 0 then redis.call('BITFIELD', per.sums, unpack(ops)) end
end
for key, ttl in pairs(expire) do redis.call('EXPIRE', key, ttl) end
-- one string, not an array: the client parses one reply instead of one per event
return table.concat(out, ',')
