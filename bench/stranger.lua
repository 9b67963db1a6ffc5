-- The stranger of bench/stranger.sh: random widths of the cached hot
-- codes (each a new draw), WIDTH_SHARE of the requests (default half),
-- and new scenes (each a new code).
local threads = 0
local widthShare = tonumber(os.getenv("WIDTH_SHARE") or "0.5")

function setup(thread)
	threads = threads + 1
	thread:set("id", threads)
end

function init(args)
	math.randomseed(os.time() * 100 + id)
	counter = 0
end

function request()
	counter = counter + 1
	if math.random() < widthShare then
		return wrk.format("GET", "/u/hot" .. math.random(1, 50) .. "?width=" .. math.random(280, 1280))
	end
	return wrk.format("GET", "/u/s" .. id .. "x" .. counter)
end
