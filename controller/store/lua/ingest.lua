--! acl HGET state seen_buckets
--! acl HSET seen_buckets
--! acl SISMEMBER seen
--! acl HMGET records
--! acl SADD seen
--! acl GETRANGE sums
--! acl SETRANGE sums
--! acl BITFIELD sums
--! acl HINCRBY excluded seen_buckets totals
--! acl EXPIRE seen
-- Sales: per event, decide its status, dedupe by event id, and accumulate the panel cell.
-- The batch arrives in blocks, one per period: per block two binary arguments (big-endian,
-- read with Redis's struct library: one struct.unpack per sale, which makes no Lua string,
-- where a text line of seven captures made seven and cost ~1.2 us a sale), so what a
-- block's sales share is sent and parsed once. Per block Redis does one HMGET of its
-- products' arm records per 1,000 products; per event, one SADD (and a SISMEMBER per older
-- dedupe generation, see Dedupe); the cell, exclusion and total increments are summed in Lua
-- and written once per batch. A block holds its sales in batch order (of two copies, the
-- first counts). The script is atomic: a batch is in Redis entirely or not at all. One
-- experiment per call: its keys share a slot.
-- KEYS: the experiment's state; ARGV: the base of its keys, then per block
--   a head: '>i8i8i8I4' k, head_end_ms, keep_s, number of products, then per product
--     '>I4Hc0' its code and name, then '>B' number of reasons and per reason '>Hc0' its text
--   its sales, '>c11I4i8i4i8B' each: digest, product, ts_ms, units in thousandths (signed: a
--     return is negative), revenue_micros (signed), reason (0 for none, else its 1-based place
--     among the head's reasons)
-- (digest: the first 11 bytes of the event id's SHA-1, see Dedupe; product: the 1-based
-- position in the block's products; code: the product's position among the experiment's
-- sorted products; revenue in millionths, a whole number). The answer is each sale's status,
-- comma-separated, in block order.
-- Cells: period k's sums are one string, {base}:sums:{k}, four big-endian signed 64-bit
-- integers per product code c at #(4c) units in thousandths, #(4c+1) revenue in millionths,
-- #(4c+2) orders (sales with positive units: a return nets its units and revenue into the
-- cell, and is no order), #(4c+3) head units in thousandths (a product never sold reads
-- zero). Whole thousandths make a cell's sum exact and the same in any order of its sales
-- (core/units.py; fractional units are goods sold by weight): 32 bytes a product, read with one
-- GET, where a hash cost ~290 bytes and a parse per field. A batch adds to a cell it touched
-- by reading its 32 bytes (GETRANGE) and writing them back (SETRANGE): two commands a cell,
-- where BITFIELD INCRBY parsed four arguments a field (~2.3 against ~1.2 us a cell). The
-- read values are exact below 2^53 in magnitude in Lua's doubles; a cell whose sums reach that
-- goes out with BITFIELD INCRBY, exact in Redis. The running totals count units in thousandths
-- too, as 'mu:{status}' (Store.totals reads them as units).
-- A period below the experiment's 'closed' mark is compacted (or being compacted): its sales
-- are 'late', counted nowhere (as the ingestor's own lateness check does), but a copy of a
-- sale counted before the close (a batch retried after a partial failure) is a 'dup' while
-- the period's markers last.
-- Dedupe: the event id's SHA-1 gives a 52-bit member (its first 13 hex digits) and a 32-bit
-- bucket hash (the next 8); the worker hashes (this script would spend ~15% of its time on
-- it) and sends the digest's first 11 bytes, a set holds the member as its decimal text;
-- period k's markers are integer sets
-- {base}:seen:{k}:{bucket hash % buckets} (intset encoding, 8 bytes a member while a set holds
-- at most 512), kept keep_s seconds (until the period closes, plus a margin). A period's bucket
-- count is fixed at its first sale, for ~200 a set of the sales remembered in the period
-- before or of one sale per product, whichever is more; {base}:seenb holds b:{k}
-- (buckets) and n:{k} (sales remembered) per period. A period that outgrows its sets (a first
-- period with many sales a product, a day of several times the volume of the one before)
-- grows in generations instead of overfilling them into hash tables (~60 bytes a member): once
-- its sales remembered reach ~400 a set of the generations so far, the next sale starts
-- generation g + 1, with 4 times the sets of g, {base}:seen:{k}:g{g+1}:{bucket hash % its
-- buckets}. A sale is new when no generation holds it: the older ones are asked first
-- (SISMEMBER), it is added to the newest. Generation 0 is the layout above, so periods begun
-- before generations existed carry on (but a worker from before generations ignores them:
-- docs/operations.md, upgrades). Store.remembered computes the generations the same way.
-- Every Lua string is interned (hashed, looked up, later swept): keys are built once per
-- batch and period or set, not per sale, and totals are summed by status before their keys are.
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
    -- ~200 a set: from the sales of the period before, or one sale per product if that is
    -- more (a first period; a period whose predecessor was quiet, or still filling when
    -- sales of both arrive together, as in a replay of shuffled history)
    local want = tonumber(redis.call('HGET', KEYS[1], 'n_products') or '') or 12800
    local prev = tonumber(redis.call('HGET', e.seenb, 'n:'..(tonumber(k) - 1)) or '')
    if prev and prev > want then want = prev end
    b = 1
    while b * 200 < want and b < 65536 do b = b * 2 end
    redis.call('HSET', e.seenb, 'b:'..k, b)
  end
  return b
end
-- a period's next dedupe generation (see Dedupe): 4 times the sets of the one before, and
-- room for ~400 sales a set; at most 7 generations, and at most 2^22 sets in one
local function can_grow(per)
  return per.top < 6 and per.b0 * 4 ^ (per.top + 1) <= 4194304
end
local function add_generation(per)
  local g = per.top + 1
  per.top = g
  per.cap = per.cap + 400 * per.b0 * 4 ^ g
  per.gens[g] = {buckets = per.b0 * 4 ^ g, sets = {},
                 prefix = g == 0 and per.seen or per.seen..'g'..g..':'}
end
-- the set of generation gen that holds a bucket hash h (its name made once a batch)
local function set_in(gen, h)
  local b = h % gen.buckets
  local set = gen.sets[b]
  if not set then set = gen.prefix..b; gen.sets[b] = set end
  return set
end
-- whether one of a period's generations 0..last holds a member (its bucket hash h)
local function held(per, last, h, member)
  for g = 0, last do
    if redis.call('SISMEMBER', set_in(per.gens[g], h), member) == 1 then return true end
  end
  return false
end
local base = ARGV[1]
local e = {base = base, excluded = base..':excluded', seenb = base..':seenb', periods = {},
           closed = tonumber(redis.call('HGET', KEYS[1], 'closed') or '0'),
           units = {}, events = {}}
local function period(k)
  local per = e.periods[k]
  if not per then
    per = {sums = base..':sums:'..k, late = tonumber(k) < e.closed,
           u = {}, r = {}, n = {}, h = {}, fresh = 0}
    local b0
    if not per.late then
      b0 = buckets_for(e, k)
    else  -- its markers, while they last: a late copy of a counted sale is a 'dup'
      b0 = tonumber(redis.call('HGET', e.seenb, 'b:'..k) or '')
    end
    if b0 then
      -- the generations that the sales remembered so far (n0) have begun
      per.b0, per.seen, per.gens, per.top, per.cap = b0, base..':seen:'..k..':', {}, -1, 0
      per.n0 = tonumber(redis.call('HGET', e.seenb, 'n:'..k) or '0') or 0
      add_generation(per)
      while per.n0 >= per.cap and can_grow(per) do add_generation(per) end
    end
    e.periods[k] = per
  end
  return per
end
local sunpack, spack, fmt = struct.unpack, struct.pack, string.format
local nout = 0
-- an arm record's parse, by its text: a period's records are a few distinct texts (one per
-- arm and blackout), and Lua keeps one copy of each, so most products' are parsed already
local parsed = {}
for i = 2, #ARGV, 2 do
  local head = ARGV[i]
  local k, head_end, ttl, nprod, at = sunpack('>i8i8i8I4', head)
  local per = period(k)
  local codes, prods, reasons = {}, {}, {}
  for j = 1, nprod do codes[j], prods[j], at = sunpack('>I4Hc0', head, at) end
  local nreasons
  nreasons, at = sunpack('>B', head, at)
  for j = 1, nreasons do reasons[j], at = sunpack('>Hc0', head, at) end
  -- arm records, read once per block: raw[p] is the text or false
  local raw = {}
  if not per.late then
    local key = base..':a:'..k
    for j = 1, #prods, 1000 do
      local got = redis.call('HMGET', key, unpack(prods, j, math.min(j + 999, #prods)))
      for n = 1, #got do raw[j + n - 1] = got[n] end
    end
  end
  local sales = ARGV[i + 1]
  local pos, size = 1, #sales
  while pos <= size do
    -- the id's digest as 4 + 4 + 3 bytes a, b, c: the member is its first 52 bits, the bucket
    -- hash the 32 after them (Store's dedupe_digest); exact in doubles
    local a, b, c, p, t, u, rv, why
    a, b, c, p, t, u, rv, why, pos = sunpack('>I4I4I3I4i8i4i8B', sales, pos)
    local low = b % 4096
    local member = fmt('%d', a * 1048576 + (b - low) / 4096)  -- a set holds its decimal text
    local h = low * 1048576 + (c - c % 16) / 16
    nout = nout + 1
    if per.late then
      out[nout] = per.gens and held(per, per.top, h, member) and 'dup' or 'late'
    else
      local status = why > 0 and reasons[why] or ''
      if status == '' then
        local text, rec = raw[p], false
        if text then
          rec = parsed[text]
          if rec == nil then
            local _, bu, reason = string.match(text, '^([^|]*)|[^|]*|([^|]*)|(.*)$')
            rec = {tonumber(bu) or false, reason}
            parsed[text] = rec
          end
        end
        if not rec then
          status = 'unassigned'
        elseif rec[1] and t < rec[1] then
          status = rec[2]
        elseif t < head_end then
          status = 'head'
        else
          status = 'ok'
        end
      end
      -- the sales remembered reach the generations' room: the next one begins, here, so
      -- that a big batch does not overfill one generation either
      if per.n0 + per.fresh >= per.cap and can_grow(per) then add_generation(per) end
      -- older generations first: a sale they hold is a 'dup'
      local fresh = 0
      local top = per.top
      if top == 0 or not held(per, top - 1, h, member) then
        local gen = per.gens[top]  -- set_in(gen, h), inlined
        local bucket = h % gen.buckets
        local set = gen.sets[bucket]
        if not set then set = gen.prefix..bucket; gen.sets[bucket] = set end
        fresh = redis.call('SADD', set, member)
        if (expire[set] or 0) < ttl then expire[set] = ttl end
      end
      if fresh == 1 then
        if status == 'ok' then
          local c = codes[p]
          local acc = (per.r[c] or 0) + rv
          if acc >= 9007199254740992 or acc <= -9007199254740992 then
            -- from 2^53 a double drops units (2^53 + 1 reads 2^53): write what is summed
            -- (exact) and start again
            redis.call('BITFIELD', per.sums, 'INCRBY', 'i64', 64 * (4 * c + 1), per.r[c] or 0)
            acc = rv
          end
          per.u[c] = (per.u[c] or 0) + u
          per.r[c] = acc
          if u > 0 then per.n[c] = (per.n[c] or 0) + 1 end
        elseif status == 'head' then
          local c = codes[p]
          per.h[c] = (per.h[c] or 0) + u
        else
          add(ints, e.excluded, k..'|'..prods[p]..'|'..status, u)
        end
        e.units[status] = (e.units[status] or 0) + u
        e.events[status] = (e.events[status] or 0) + 1
        per.fresh = per.fresh + 1
        out[nout] = status
      else
        out[nout] = 'dup'
      end
    end
  end
end
for k, per in pairs(e.periods) do  -- sales remembered, for the next period's bucket count
  if per.fresh > 0 then add(ints, e.seenb, 'n:'..k, per.fresh) end
end
local totals = base..':totals'
for st, v in pairs(e.units) do add(ints, totals, 'mu:'..st, v) end
for st, v in pairs(e.events) do add(ints, totals, 'events:'..st, v) end
for key, h in pairs(ints) do
  for f, v in pairs(h) do redis.call('HINCRBY', key, f, fmt('%d', v)) end
end
-- the cells: each one touched is read (32 bytes), summed and written back. Offsets go as
-- text made with '%d' (an integer's sprintf): a Lua number goes to Redis as '%.17g', whose
-- floating-point formatting cost ~0.1 us an argument. The BITFIELD past 2^53 takes numbers,
-- exact for whole numbers below 2^53 (every offset and increment there)
local exact, mabs = 9007199254740992, math.abs
local zeros = string.rep('\0', 32)
for _, per in pairs(e.periods) do
  local key, pu, pr, pn, ph = per.sums, per.u, per.r, per.n, per.h
  local touched = {}
  for c in pairs(pu) do touched[c] = true end
  for c in pairs(ph) do touched[c] = true end
  for c in pairs(touched) do
    local off = fmt('%d', 32 * c)
    local was = redis.call('GETRANGE', key, off, fmt('%d', 32 * c + 31))
    if #was < 32 then was = was..string.sub(zeros, #was + 1) end  -- past the string's end
    local u0, r0, n0, h0 = sunpack('>i8i8i8i8', was)
    local du, dr, dn, dh = pu[c] or 0, pr[c] or 0, pn[c] or 0, ph[c] or 0
    if mabs(u0 + du) < exact and mabs(r0 + dr) < exact and n0 + dn < exact
        and mabs(h0 + dh) < exact then
      redis.call('SETRANGE', key, off, spack('>i8i8i8i8', u0 + du, r0 + dr, n0 + dn, h0 + dh))
    else  -- a sum past 2^53: added by Redis, in 64-bit integers
      local b = 4 * c * 64
      redis.call('BITFIELD', key, 'INCRBY', 'i64', b, du, 'INCRBY', 'i64', b + 64, dr,
                 'INCRBY', 'i64', b + 128, dn, 'INCRBY', 'i64', b + 192, dh)
    end
  end
end
for key, ttl in pairs(expire) do redis.call('EXPIRE', key, fmt('%d', ttl)) end
-- one string, not an array: the client parses one reply instead of one per event
return table.concat(out, ',')
