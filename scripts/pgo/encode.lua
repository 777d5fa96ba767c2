-- A training decoder of the profile-guided build (scripts/pgo/train):
-- encodes the record's image as JSON, as a decoder forwarding items does,
-- and keeps the longest.
local cjson = require "cjson"
return {
  name = "train_encode",
  aggregate = "max",
  decode = function(rec)
    local img = rec.dynamodb.NewImage or rec.dynamodb.OldImage
    if img == nil then return nil end
    return { id = rec.eventID, len = #cjson.encode(img) }
  end,
  key = function(v) return "longest" end,
  value = function(v) return v.len end,
}
