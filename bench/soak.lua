-- Mixed load for bench/soak.sh: 80% hits on 200 hot codes, 20% new codes.
counter = 0
math.randomseed(os.time())

request = function()
	counter = counter + 1
	local path
	if math.random() < 0.8 then
		path = "pages/hot/" .. math.random(1, 200)
	else
		path = "pages/new/" .. math.random(1, 1000000000) .. "/" .. counter
	end
	return wrk.format("GET", "/qr?path=" .. path)
end
