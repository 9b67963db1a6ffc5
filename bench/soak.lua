-- Mixed load for bench/soak.sh: 80% hits on 200 hot codes, 20% new codes.
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
	local path
	if math.random() < 0.8 then
		path = "pages/hot/" .. math.random(1, 200)
	else
		path = "pages/new/" .. id .. "/" .. counter
	end
	return wrk.format("GET", "/qr?path=" .. path)
end
