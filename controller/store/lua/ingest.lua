-- Sales: per event, decide its status, dedupe by event id, and accumulate the panel cell.
-- The batch arrives as one string (one line per event, fields split by '|'; ids cannot hold
-- '|' or newlines) so the client packs one argument, not nine per event. Per event Redis
-- does one HGET (cached per cell within the batch) and one SET NX (the dedupe marker doubles
-- as the existence check); the cell, exclusion and total increments are summed in Lua and
-- written once per batch. The script is atomic: a batch is in Redis entirely or not at all.
-- ARGV: prefix, ttl_s, batch; batch lines:
--   event_id|exp|k|product|ts_ms|head_end_ms|units|revenue|pre_reason\n
-- Every Lua string is interned (hashed, looked up, later swept): per-experiment keys are
-- built once per batch, not per sale, and totals are summed by status before their keys are.
local p, ttl = ARGV[1], ARGV[2]
local seen = p..':seen:'
local out = {}
local ints, floats, exps = {}, {}, {}
local function add(t, key, field, v)
  local h = t[key]
  if not h then h = {}; t[key] = h end
  h[field] = (h[field] or 0) + v
end
local pat = '([^|\n]*)|([^|\n]*)|([^|\n]*)|([^|\n]*)|([^|\n]*)|([^|\n]*)|([^|\n]*)|([^|\n]*)|([^|\n]*)\n'
for eid, exp, k, prod, ts, head_end, units, revenue, reason in string.gmatch(ARGV[3], pat) do
  local e = exps[exp]
  if not e then
    local base = p..':exp:'..exp
    e = {base = base, cells = base..':cells', excluded = base..':excluded',
         akeys = {}, units = {}, events = {}}
    exps[exp] = e
  end
  local status = reason
  local arm = ''
  if status == '' then
    local ak = e.akeys[k]
    if not ak then
      ak = {key = e.base..':a:'..k, recs = {}}
      e.akeys[k] = ak
    end
    local rec = ak.recs[prod]
    if rec == nil then
      rec = redis.call('HGET', ak.key, prod)
      ak.recs[prod] = rec
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
  local fresh = redis.call('SET', seen..eid, status..'|'..exp..'|'..k..'|'..arm,
                           'NX', 'EX', ttl)
  if fresh then
    local u = tonumber(units)
    if status == 'ok' then
      local cell = k..'|'..prod..'|'
      add(ints, e.cells, cell..'u', u)
      add(floats, e.cells, cell..'r', tonumber(revenue))
      add(ints, e.cells, cell..'n', 1)
    elseif status == 'head' then
      add(ints, e.cells, k..'|'..prod..'|h', u)
    else
      add(ints, e.excluded, k..'|'..prod..'|'..status, u)
    end
    e.units[status] = (e.units[status] or 0) + u
    e.events[status] = (e.events[status] or 0) + 1
    out[#out+1] = status
  else
    out[#out+1] = 'dup'
  end
end
for _, e in pairs(exps) do
  local totals = e.base..':totals'
  for st, v in pairs(e.units) do add(ints, totals, 'units:'..st, v) end
  for st, v in pairs(e.events) do add(ints, totals, 'events:'..st, v) end
end
for key, h in pairs(ints) do
  for f, v in pairs(h) do redis.call('HINCRBY', key, f, string.format('%d', v)) end
end
for key, h in pairs(floats) do
  for f, v in pairs(h) do redis.call('HINCRBYFLOAT', key, f, string.format('%.17g', v)) end
end
-- one string, not an array: the client parses one reply instead of one per event
return table.concat(out, ',')
