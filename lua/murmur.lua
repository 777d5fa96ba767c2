-- murmur: helpers for DynamoDB Streams decoders (DESIGN section 2).
--
--   murmur.null              the null sentinel (same value as cjson.null)
--   murmur.decimal(t, k)     exact decimal text of t[k] (DynamoDB numbers
--                            carry 38 digits; t[k] itself may be a rounded
--                            float); for a number not from the event, its
--                            shortest round-trip text; nil for non-numbers
--   murmur.changed(rec, f)   did this change touch attribute f?
--   murmur.delta(rec, f)     new - old of numeric attribute f, exactly
--   murmur.materialize(v)    converts everything under v now and returns v
--                            (records are converted as they are read; raw
--                            access - rawget, next - sees only what was
--                            read, and a record kept for a later invocation
--                            must be materialised before its own ends)
--   murmur.version
--
-- Which images count: INSERT compares nothing with NewImage, REMOVE
-- OldImage with nothing, MODIFY OldImage with NewImage. When a stream view
-- leaves an image out (KEYS_ONLY, NEW_IMAGE, OLD_IMAGE), the record's Keys
-- stand in for it; an attribute absent from the image used counts as absent
-- (changed) or as 0 (delta). Other eventNames compare OldImage with
-- NewImage as they are.
local core = require "murmur.core"

local type, pairs, rawget, pcall, error, tostring =
  type, pairs, rawget, pcall, error, tostring

local murmur = {
  version = "0.1.0",
  null = core.null,
  decimal = core.decimal,
  materialize = core.materialize,
}

-- Deep comparisons stop (with an error) below this many levels; converted
-- data never gets there (MURMUR_MAX_DEPTH), only self-referencing tables.
local MAX_DEPTH = 200

-- The (old, new) images of rec, as described above; either may be nil.
local function sides(rec, fname)
  if type(rec) ~= "table" then
    error("bad argument #1 to '" .. fname .. "' (record expected, got "
          .. type(rec) .. ")", 3)
  end
  local ddb = rec.dynamodb
  if type(ddb) ~= "table" then return nil, nil end
  local ev = rec.eventName
  local new, old, keys = ddb.NewImage, ddb.OldImage, ddb.Keys
  if ev == "INSERT" then return nil, new or keys end
  if ev == "REMOVE" then return old or keys, nil end
  if ev == "MODIFY" then return old or keys, new or keys end
  return old, new
end

-- Exact comparison of the numbers ta[ka] and tb[kb] by their decimal texts
-- (two 38-digit numbers may round to the same float).
local function same_number(ta, ka, tb, kb)
  local x, y = core.decimal(ta, ka), core.decimal(tb, kb)
  if x == y then return x ~= nil or ta[ka] == tb[kb] end
  if x == nil or y == nil then return false end
  local ok, r = pcall(core.dec_cmp, x, y)
  if ok then return r == 0 end
  return ta[ka] == tb[kb]   -- outside DynamoDB's range: compare as floats
end

-- A set member's identity: numbers by canonical decimal text.
local function member_key(t, i, kind)
  if kind == "NS" then
    local text = core.decimal(t, i)
    local ok, canon = pcall(core.dec_add, text, 0)
    return "n" .. (ok and canon or tostring(t[i]))
  end
  return "s" .. tostring(t[i])
end

-- Sets are unordered: equal when they hold the same members.
local function same_set(a, b, kind)
  if #a ~= #b then return false end
  local count = {}
  for i = 1, #a do
    local k = member_key(a, i, kind)
    count[k] = (count[k] or 0) + 1
  end
  for i = 1, #b do
    local k = member_key(b, i, kind)
    local c = count[k]
    if not c or c == 0 then return false end
    count[k] = c - 1
  end
  return true
end

-- Deep equality of ta[ka] and tb[kb], DynamoDB-style: numbers exactly,
-- sets as sets, a list never equal to a map.
local function same(ta, ka, tb, kb, depth)
  local a, b = ta[ka], tb[kb]
  local ty = type(a)
  if ty ~= type(b) then return false end
  if ty == "number" then return same_number(ta, ka, tb, kb) end
  if ty ~= "table" or a == b then return a == b end
  if depth > MAX_DEPTH then
    error("murmur.changed: values nested deeper than " .. MAX_DEPTH
          .. " levels", 0)
  end
  local ka_, kb_ = core.kind(a), core.kind(b)
  if ka_ and kb_ and ka_ ~= kb_ then return false end
  local kind = ka_ or kb_
  if kind == "SS" or kind == "NS" or kind == "BS" then
    return same_set(a, b, kind)
  end
  for k in pairs(a) do
    if not same(a, k, b, k, depth + 1) then return false end
  end
  for k in pairs(b) do
    if rawget(a, k) == nil then return false end
  end
  return true
end

-- The value of field in image img (nil when there is no image).
local function field_of(img, field)
  if img == nil then return nil end
  return img[field]
end

-- murmur.changed(rec, field) -> boolean: the attribute appeared,
-- disappeared or got a different value.
function murmur.changed(rec, field)
  local old, new = sides(rec, "changed")
  if field == nil then error("bad argument #2 to 'changed' (field expected)", 2) end
  local ov, nv = field_of(old, field), field_of(new, field)
  if ov == nil and nv == nil then return false end
  if ov == nil or nv == nil then return true end
  return not same(old, field, new, field, 1)
end

-- murmur.delta(rec, field) -> new - old as a number (integer when
-- integral), computed on the exact decimal texts so 0.3 - 0.1 is 0.2; a
-- missing side counts as 0. nil when the field is absent from both sides
-- or either side holds something other than a number. Written in C
-- (runtime/murmur_lua.c): it reads an unread number straight from the
-- event, without converting the image.
murmur.delta = core.delta

return murmur
