-- Benchmark pipeline: a decoder that reads every attribute of both images
-- (walks every map, list and set), then sums the order total per customer.
local function walk(v)
  if type(v) ~= "table" then return 1 end
  local n = 0
  for _, x in pairs(v) do n = n + walk(x) end
  return n
end

return {
  name = "every_attribute",
  aggregate = "sum",
  decode = function(rec)
    local new, old = rec.dynamodb.NewImage, rec.dynamodb.OldImage
    local seen = walk(rec.dynamodb.Keys) + (new and walk(new) or 0) + (old and walk(old) or 0)
    local img = new or old
    if img == nil or seen == 0 then return nil end
    return img
  end,
  key = function(o) return "customer#" .. o.customer_id end,
  value = function(o) return o.total end,
}
