"""The HTTP layer: the `Api` every function uses (routing, errors to answers), schemas, views,
node authentication, the operator API and the local router."""
