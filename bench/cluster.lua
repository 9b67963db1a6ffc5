-- New codes only, for bench/cluster.sh: every request asks for a scene no
-- request has asked for before (a prefix per wrk process, a counter per
-- thread).
local threads = 0

function setup(thread)
	threads = threads + 1
	thread:set("id", threads)
end

function init(args)
	prefix = args[1] or "p"
	counter = 0
end

function request()
	counter = counter + 1
	return wrk.format("GET", "/qr?scene=" .. prefix .. "-" .. id .. "-" .. counter)
end
