-- New codes only, for bench/cluster.sh: each thread takes its own share of
-- the signed URLs in the file named by the first argument (the second is
-- the number of wrk threads), so no request asks for a code another has
-- asked for.
local threads = 0

function setup(thread)
	threads = threads + 1
	thread:set("id", threads)
end

function init(args)
	local share = tonumber(args[2])
	urls = {}
	local n = 0
	for line in io.lines(args[1]) do
		if n % share == id - 1 then
			urls[#urls + 1] = line
		end
		n = n + 1
	end
	i = 0
end

function request()
	i = i % #urls + 1
	return wrk.format("GET", urls[i])
end
