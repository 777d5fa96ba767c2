-- Order totals per customer: the running sum of every customer's orders.
--
-- An INSERT adds the order's total, a MODIFY adds the change of its total,
-- a REMOVE subtracts it (murmur.delta does the exact arithmetic), so the
-- aggregate always equals the sum over the orders currently in the table.
local murmur = require "murmur"

return {
  name = "order_totals",
  aggregate = "sum",

  decode = function(rec)
    local img = rec.dynamodb.NewImage or rec.dynamodb.OldImage
    if img == nil then return nil end            -- KEYS_ONLY stream: no amounts
    if img.customer_id == nil then
      error("order " .. tostring(img.order_id) .. " has no customer_id")
    end
    local d = murmur.delta(rec, "total")
    if d == nil or d == 0 then return nil end    -- total absent or unchanged
    return { customer = img.customer_id, amount = d }
  end,

  key = function(o) return "customer#" .. o.customer end,
  value = function(o) return o.amount end,
}
