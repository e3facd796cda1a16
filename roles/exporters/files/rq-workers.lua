-- RQ's workers, summed over every worker registered in rq:workers (each a hash
-- rq:worker:<name>): how many are busy and idle, and the jobs they finished and failed and
-- the seconds they spent on jobs since each started. Read by the Redis exporter of the
-- queues instance at each scrape (redis_script_values{key=...}); it runs as the monitoring
-- user, which may read these workers' hashes and nothing else of RQ's but key sizes.
local busy, idle, succeeded, failed, seconds = 0, 0, 0, 0, 0
for _, key in ipairs(redis.call('SMEMBERS', 'rq:workers')) do
  local w = redis.call('HMGET', key, 'state', 'successful_job_count', 'failed_job_count',
                       'total_working_time')
  if w[1] == 'busy' then
    busy = busy + 1
  elseif w[1] then
    idle = idle + 1
  end
  succeeded = succeeded + (tonumber(w[2]) or 0)
  failed = failed + (tonumber(w[3]) or 0)
  seconds = seconds + (tonumber(w[4]) or 0)
end
return {
  'rq_workers_busy', tostring(busy),
  'rq_workers_idle', tostring(idle),
  'rq_jobs_succeeded', tostring(succeeded),
  'rq_jobs_failed', tostring(failed),
  'rq_working_seconds', tostring(seconds),
}
