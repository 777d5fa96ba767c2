// tests/servers/crc32.js - CRC-32 (IEEE 802.3, the x-amz-crc32 header's
// checksum) of a Buffer, for the test servers that write DynamoDB answers.
'use strict'

function crc32 (buf) {
  let c = 0xFFFFFFFF
  for (const b of buf) {
    c ^= b
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xEDB88320 & -(c & 1))
  }
  return (c ^ 0xFFFFFFFF) >>> 0
}

module.exports = { crc32 }
