# Build the single binary with compile.sh, then ship only the binary.
FROM node:20-bookworm AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN ./compile.sh

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/phalanx /usr/local/bin/phalanx
VOLUME /data
ENV DATA_DIR=/data
EXPOSE 9000 9100 7946/udp
ENTRYPOINT ["/usr/local/bin/phalanx"]
CMD ["serve"]
