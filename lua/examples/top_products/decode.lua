-- Top products by quantity: the best-selling SKUs overall and per category.
--
-- The source table holds order lines (order_id, line, sku, qty, category).
-- A top-k sketch per key keeps the heaviest items (value() returns the item
-- and its weight, a positive integer). An INSERT adds the line's quantity;
-- a MODIFY that raises the quantity adds the increase (murmur.delta is exact
-- decimal arithmetic). A top-k sketch cannot subtract, so lowered
-- quantities and REMOVEs are skipped: the ranking counts quantities ever
-- ordered, not those still in the table.
--
-- Rows: "top#all" and "top#category#<category>", bucket 0 (not windowed);
-- `murmur-ddb query` prints the top ten as [[sku, quantity], ...].
local murmur = require "murmur"

return {
  name = "top_products",
  aggregate = "topk",

  decode = function(rec)
    local line = rec.dynamodb.NewImage
    if rec.eventName == "REMOVE" or line == nil then return nil end
    local qty = murmur.delta(rec, "qty")
    if qty == nil or qty <= 0 then return nil end      -- unchanged or lowered
    if math.type(qty) ~= "integer" then
      error("line " .. tostring(line.order_id) .. "/" .. tostring(line.line)
            .. ": qty " .. murmur.decimal(line, "qty") .. " is not a whole number")
    end
    if line.sku == nil then error("line " .. tostring(line.order_id) .. " has no sku") end
    return { sku = line.sku, category = line.category, qty = qty }
  end,

  keys = function(l)
    local keys = { "top#all" }
    if l.category then keys[2] = "top#category#" .. l.category end
    return keys
  end,
  value = function(l) return l.sku, l.qty end,
}
