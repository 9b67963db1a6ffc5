-- The stranger of bench/stranger.sh: half random widths of the cached hot
-- codes (each a new draw), half new scenes (each a new code).
local threads = 0

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
	if math.random() < 0.5 then
		return wrk.format("GET", "/u/hot" .. math.random(1, 50) .. "?width=" .. math.random(280, 1280))
	end
	return wrk.format("GET", "/u/s" .. id .. "x" .. counter)
end
