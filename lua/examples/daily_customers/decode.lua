-- Daily unique customers per city: how many distinct customers placed an
-- order in each city, per UTC day, kept for 30 days.
--
-- A HyperLogLog sketch per (city, day) counts distinct customer ids in at
-- most 3 KB however many orders arrive (small counts come out exact or nearly,
-- large ones with a standard error of 1.6%). Only new orders count: a MODIFY
-- (status change) or a REMOVE of an order does not undo the customer's
-- visit, and a sketch cannot forget an item anyway.
--
-- Rows: key "city#<city>", bucket = floor(event time / 86400) (days since
-- 1970-01-01 UTC), removed by DynamoDB's TTL 30 days after the day ends.
return {
  name = "daily_customers",
  aggregate = "hll",
  window = { granularity = "1d", retention = "30d" },

  decode = function(rec)
    if rec.eventName ~= "INSERT" then return nil end   -- only new orders count
    local o = rec.dynamodb.NewImage
    if o == nil then return nil end                     -- KEYS_ONLY stream
    if o.city == nil then return nil end                -- no city: not counted
    if o.customer_id == nil then
      error("order " .. tostring(o.order_id) .. " has no customer_id")
    end
    return o
  end,

  key = function(o) return "city#" .. o.city end,
  value = function(o) return o.customer_id end,
}
