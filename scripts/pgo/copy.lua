-- A training decoder of the profile-guided build (scripts/pgo/train):
-- flattens the keys and both images into "path=value" strings, reading
-- every attribute, as a decoder that copies or normalises whole items does.
local murmur = require "murmur"
local function flat(v, prefix, out)
  if type(v) == "table" then
    if #v > 0 then
      for i, x in ipairs(v) do flat(x, prefix .. "[" .. i .. "]", out) end
    else
      for k, x in pairs(v) do flat(x, prefix .. "." .. k, out) end
    end
  elseif v ~= murmur.null then
    out[#out + 1] = prefix .. "=" .. tostring(v)
  end
  return out
end
return {
  name = "train_copy",
  aggregate = "count",
  decode = function(rec)
    local d = rec.dynamodb
    local out = flat(d.Keys, "keys", {})
    if d.NewImage then flat(d.NewImage, "new", out) end
    if d.OldImage then flat(d.OldImage, "old", out) end
    if #out == 0 then return nil end
    return { kind = rec.eventName, n = #out }
  end,
  key = function(v) return "fields#" .. v.kind end,
}
