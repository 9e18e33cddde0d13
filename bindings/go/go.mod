module libdsa/dsa

go 1.19
