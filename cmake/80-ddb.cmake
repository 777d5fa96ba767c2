# DynamoDB: AWS request plumbing (SigV4 by libcurl), the request runner
# shared with the SQS client (awsreq.c), the JSON API client,
# the dynamodb:// store and dedup backends, and their Check suite (which
# starts dynalite from tests/servers, installed by scripts/test).
target_sources(murmur_core PRIVATE
  runtime/aws.c runtime/awsreq.c runtime/ddb.c runtime/store_dynamodb.c runtime/dedup_dynamodb.c)
mm_add_check(check_ddb tests/check_ddb.c)
