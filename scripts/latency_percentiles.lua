-- wrk script for scripts/bench.sh: after the run, one line with the latency percentiles in us,
-- so the bench can show where in the distribution a setup departs from bare (a uniform cost
-- moves the median; short stalls of the service's core move only the upper percentiles).
local percentiles = { 50, 75, 90, 95, 99, 99.9 }

done = function(summary, latency, requests)
  local values = {}
  for i, p in ipairs(percentiles) do
    values[i] = string.format("%.0f", latency:percentile(p))
  end
  io.write("percentiles_us " .. table.concat(values, " ") .. "\n")
end
